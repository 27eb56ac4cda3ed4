import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Hono } from 'hono';
import type { AgentConfig } from './config.ts';
import type { AgentDeps } from './deps.ts';
import type { AppEnv } from './http/app-env.ts';
import { requireToken } from './http/auth.ts';
import { notFound, onError } from './http/errors.ts';
import { requestId } from './http/request-id.ts';
import { commandRoutes } from './routes/commands.ts';
import { envRoutes } from './routes/env.ts';
import { executeRoutes } from './routes/execute.ts';
import { fileRoutes } from './routes/files.ts';
import { healthRoutes } from './routes/health.ts';
import { jupyterRoutes } from './routes/jupyter.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { processRoutes } from './routes/processes.ts';
import { BackgroundJobs } from './services/background-jobs.ts';
import { CodeExecutor } from './services/code-executor.ts';
import { CommandRunner } from './services/command-runner.ts';
import { EnvStore } from './services/env-store.ts';
import { FileService } from './services/file-service.ts';
import { KernelService } from './services/kernel.ts';
import { SystemMetrics } from './services/metrics.ts';
import { PathGuard } from './services/path-guard.ts';
import { ProcessManager } from './services/process-manager.ts';
import { StartCommand } from './services/start-command.ts';
import { AgentStats } from './services/stats.ts';

/** Routes answered without a token. */
const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/health']);

/** Options of {@link createAgent}. */
export interface CreateAppOptions {
  /** Where unexpected errors are logged. @default console.error */
  log?: (line: string) => void;
  /** Process manager to start children with; pass one to kill them all on shutdown. @default a new one */
  processes?: ProcessManager;
}

/** A wired agent: the HTTP app, the upgrade listener for WebSockets and tunnels, and shutdown. */
export interface Agent {
  app: Hono<AppEnv>;
  deps: AgentDeps;
  /** The HTTP server's `upgrade` listener. */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Kills every child (background processes, streams, terminals, the kernel). */
  close(): void;
}

/**
 * The `upgrade` listener, built on the first upgrade: the WebSocket endpoints
 * bring `ws` and with it tls, https and zlib, which an agent answering
 * `/health` does not need loaded yet.
 */
function lazyUpgradeHandler(deps: AgentDeps): Agent['handleUpgrade'] {
  let handler: Promise<Agent['handleUpgrade']> | undefined;
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    handler ??= import('./ws/upgrade.ts').then((m) => m.createUpgradeHandler(deps));
    handler.then(
      (handle) => handle(req, socket, head),
      (err: unknown) => {
        deps.log(`agent: cannot load the WebSocket endpoints: ${String(err)}`);
        socket.destroy();
      },
    );
  };
}

/**
 * Builds the agent: services, auth, error handling, every route and the
 * WebSocket endpoints.
 * @example
 * const agent = createAgent(loadConfig(process.env));
 * server.on('upgrade', agent.handleUpgrade);
 */
export function createAgent(config: AgentConfig, options: CreateAppOptions = {}): Agent {
  const log = options.log ?? ((line: string) => console.error(line));
  const envStore = new EnvStore();
  const processes = options.processes ?? new ProcessManager();
  const stats = new AgentStats();
  const runDeps = { config, envStore, processes, stats };
  const kernel = new KernelService({ ...runDeps, bridgePath: config.kernelBridgePath, log });
  const guard = new PathGuard(config.fileRoots);
  const deps: AgentDeps = {
    config,
    startedAt: new Date(),
    envStore,
    processes,
    executor: new CodeExecutor({ ...runDeps, kernel }),
    commands: new CommandRunner(runDeps),
    files: new FileService({ guard, maxReadBytes: config.maxBodyBytes }),
    guard,
    kernel,
    jobs: new BackgroundJobs(runDeps),
    startCommand: new StartCommand({
      command: config.startCmd,
      readyCheck: config.readyCheck,
      workdir: config.workdir,
      templateEnv: config.templateEnv,
      envStore,
      processes,
      log,
    }),
    stats,
    metrics: new SystemMetrics(config.cgroupRoot),
    log,
  };

  const app = new Hono<AppEnv>();
  app.onError(onError(log));
  app.notFound(notFound);
  app.use('*', requestId());
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    stats.recordRequest(c.res.status, performance.now() - started);
  });
  const auth = requireToken({ key: config.tokenKey, sandboxId: config.sandboxId });
  app.use('*', (c, next) => (PUBLIC_PATHS.has(c.req.path) ? next() : auth(c, next)));

  app.route('/', healthRoutes(deps));
  app.route('/', executeRoutes(deps));
  app.route('/', commandRoutes(deps));
  app.route('/', processRoutes(deps));
  app.route('/', fileRoutes(deps));
  app.route('/', envRoutes(deps));
  app.route('/', metricsRoutes(deps));
  app.route('/', jupyterRoutes(deps));
  return {
    app,
    deps,
    handleUpgrade: lazyUpgradeHandler(deps),
    close: () => {
      deps.jobs.killAll();
      kernel.close();
      processes.killAll('SIGKILL');
    },
  };
}

/**
 * Builds the agent's HTTP app (see {@link createAgent} for WebSockets too).
 * @example
 * const app = createApp(loadConfig(process.env));
 * const res = await app.request('/health');
 */
export function createApp(config: AgentConfig, options: CreateAppOptions = {}): Hono<AppEnv> {
  return createAgent(config, options).app;
}
