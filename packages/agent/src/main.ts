import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { reservedEnvPrefix } from '@warren/protocol';
import { createAgent } from './app.ts';
import { type AgentConfig, ConfigError, loadConfig } from './config.ts';
import { requestListener } from './http/node-server.ts';
import { ExecHelper } from './services/exec-helper.ts';
import { ProcessManager } from './services/process-manager.ts';
import { warmUpRunPaths } from './services/warm-up.ts';
import { AGENT_NAME, AGENT_VERSION } from './version.ts';

/** How long shutdown waits for open connections before exiting anyway. */
const SHUTDOWN_GRACE_MS = 2000;
/** How long after listening the kernel warm-up waits for the first request to be answered. */
const WARM_UP_AFTER_MS = 100;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Removes a stale socket file left by a previous run; refuses to remove anything else. */
async function clearStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (!st.isSocket()) throw new Error(`WARREN_AGENT_SOCKET ${path} exists and is not a socket`);
  await unlink(path);
}

/**
 * Runs `work` once the server has answered its first request (the host's
 * readiness poll of `/health`) or `fallbackMs` after the call, whichever is first.
 */
function afterFirstResponse(server: Server, fallbackMs: number, work: () => void): void {
  let done = false;
  const run = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    server.off('request', onRequest);
    work();
  };
  const onRequest = (_req: IncomingMessage, res: ServerResponse) => res.once('close', () => setImmediate(run));
  const timer = setTimeout(run, fallbackMs);
  server.on('request', onRequest);
}

function listen(server: Server, config: AgentConfig): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'string' ? `unix:${addr}` : `http://${addr?.address}:${addr?.port}`);
    };
    if (config.listen.kind === 'socket') server.listen(config.listen.path, done);
    else server.listen(config.listen.port, config.listen.host, done);
  });
}

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log(`${AGENT_NAME}: ${err.message}`);
    process.exitCode = 2;
    return;
  }
  // The agent's own variables (the token key above all) stay out of everything it starts.
  for (const name of Object.keys(process.env)) if (name.startsWith(reservedEnvPrefix)) delete process.env[name];

  await mkdir(config.workdir, { recursive: true }).catch((err: Error) =>
    log(`${AGENT_NAME}: cannot create workdir ${config.workdir}: ${err.message}`),
  );

  // Commands start through the exec helper (posix_spawn in a small static process) rather than a fork of
  // the agent, whose cost grows with the agent's memory; until it is ready, or without it, they are forked.
  const execHelper = config.execHelperPath === null ? undefined : new ExecHelper({ path: config.execHelperPath, log });
  const processes = new ProcessManager({ execHelper });
  const agent = createAgent(config, { processes, log });
  const server = createServer(
    requestListener(agent.app.fetch, (err) => log(`${AGENT_NAME}: request failed: ${String(err)}`)),
  );
  // WebSocket endpoints and the port tunnel arrive as HTTP upgrades on the same server.
  server.on('upgrade', agent.handleUpgrade);
  // Installed before listening, so a signal that comes while the agent starts still ends it cleanly.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`${AGENT_NAME}: ${signal}, shutting down`);
    agent.close();
    server.close(() => {
      const cleanup = config.listen.kind === 'socket' ? unlink(config.listen.path).catch(() => undefined) : null;
      void Promise.resolve(cleanup).finally(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', stop);
  if (config.listen.kind === 'socket') await clearStaleSocket(config.listen.path);
  const where = await listen(server, config);
  if (config.listen.kind === 'socket') {
    // Every route but /health needs a token; who may connect is decided by the socket's directory.
    await chmod(config.listen.path, 0o666);
  }
  log(`${AGENT_NAME} ${AGENT_VERSION} for sandbox ${config.sandboxId} listening on ${where}`);
  // Starting children forks this process: done after the first answer, so it does not delay the host's
  // readiness poll; requests that need the kernel or the start command wait for them anyway.
  if (!config.recordingCodeCache) {
    afterFirstResponse(server, WARM_UP_AFTER_MS, () => {
      // Started now, while the agent is small, so that the first command does not wait for it.
      execHelper?.start();
      // A warm kernel makes the first python run fast; without ipykernel this only finds that out. Then the
      // python, command and code paths run once, uncounted, before the kernel reports idle (the host's readiness).
      agent.deps.kernel.warmUp((kernel) => warmUpRunPaths(agent.deps, { kernel }));
      // The template's start command (a web server, say); the server waits for its readiness check.
      agent.deps.startCommand.start();
    });
  }
}

process.on('unhandledRejection', (reason) => log(`${AGENT_NAME}: unhandled rejection: ${String(reason)}`));
process.on('uncaughtException', (err) => log(`${AGENT_NAME}: uncaught exception: ${err.stack ?? String(err)}`));

main().catch((err: unknown) => {
  log(`${AGENT_NAME}: failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
