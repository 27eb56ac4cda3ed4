import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signSandboxToken } from '@warren/protocol';
import type { Hono } from 'hono';
import { type Agent, createAgent } from './app.ts';
import { loadConfig } from './config.ts';
import type { AppEnv } from './http/app-env.ts';
import { requestListener } from './http/node-server.ts';
import { ProcessManager } from './services/process-manager.ts';

/** An in-process agent over a throwaway directory tree, for route tests. */
export interface TestAgent {
  app: Hono<AppEnv>;
  agent: Agent;
  processes: ProcessManager;
  /** Base directory holding `workspace/`, `scratch/` (the two roots) and `outside/`. */
  base: string;
  workspace: string;
  scratch: string;
  /** Not an allowed root; holds `secret.txt`. */
  outside: string;
  sandboxId: string;
  key: Buffer;
  /** A token for this agent's sandbox (or another one), valid unless `expiresIn` is negative. */
  token(options?: { sandboxId?: string; expiresInSeconds?: number; key?: Buffer }): string;
  /** `app.request` with a valid token. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** `request` with a JSON body. */
  json(method: string, path: string, body: unknown): Promise<Response>;
  /** Serves the agent on 127.0.0.1 (HTTP and upgrades) and answers its address, e.g. `127.0.0.1:41234`. */
  listen(): Promise<string>;
  cleanup(): Promise<void>;
}

/** Starts an in-process agent whose file roots and workdir are temp directories. */
export async function createTestAgent(env: Record<string, string> = {}): Promise<TestAgent> {
  const base = await mkdtemp(join(tmpdir(), 'warren-agent-test-'));
  const workspace = join(base, 'workspace');
  const scratch = join(base, 'scratch');
  const outside = join(base, 'outside');
  await Promise.all([mkdir(workspace), mkdir(scratch), mkdir(outside)]);
  await writeFile(join(outside, 'secret.txt'), 'top secret\n');
  // Hermetic by default: python runs as plain processes whether or not the host has ipykernel.
  const noKernel = join(base, 'no_kernel_bridge.py');
  await writeFile(
    noKernel,
    'import json\nprint(json.dumps({"event": "unavailable", "reason": "tests run python without a kernel"}))\nraise SystemExit(3)\n',
  );
  const key = randomBytes(32);
  const sandboxId = `sb-${randomBytes(4).toString('hex')}`;
  const config = loadConfig({
    WARREN_SANDBOX_ID: sandboxId,
    WARREN_AGENT_TOKEN_KEY: key.toString('hex'),
    WARREN_AGENT_FILE_ROOTS: `${workspace}:${scratch}`,
    WARREN_AGENT_WORKDIR: workspace,
    WARREN_AGENT_KERNEL_BRIDGE: noKernel,
    ...env,
  });
  const processes = new ProcessManager();
  const agent = createAgent(config, { processes, log: () => undefined });
  const { app } = agent;
  let server: Server | undefined;
  const listen = async (): Promise<string> => {
    if (!server) {
      const listening = createServer(
        requestListener(app.fetch, (err) => console.error('test agent: request failed:', err)),
      );
      listening.on('upgrade', agent.handleUpgrade);
      await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
      server = listening;
    }
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const token: TestAgent['token'] = (options = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return signSandboxToken(options.key ?? key, {
      sid: options.sandboxId ?? sandboxId,
      iat: now,
      exp: now + (options.expiresInSeconds ?? 3600),
      jti: randomBytes(6).toString('hex'),
    });
  };
  const request: TestAgent['request'] = async (path, init = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${token()}`);
    return app.request(path, { ...init, headers });
  };
  const json: TestAgent['json'] = (method, path, body) =>
    request(path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return {
    app,
    agent,
    processes,
    base,
    workspace,
    scratch,
    outside,
    sandboxId,
    key,
    token,
    request,
    json,
    listen,
    cleanup: async () => {
      agent.close();
      if (server) {
        server.closeAllConnections();
        await new Promise((resolve) => server?.close(resolve));
      }
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** True while `pid` is a live (not zombie) process. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Polls until `check` holds or `timeoutMs` passes; returns the last result. */
export async function eventually(check: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

/** Pids of live processes whose process group is `pgid`. */
export function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const line of execFileSync('ps', ['-e', '-o', 'pid=,pgid=,stat=']).toString().split('\n')) {
    const [pid, group, stat] = line.trim().split(/\s+/);
    if (Number(group) === pgid && stat && !stat.startsWith('Z')) pids.push(Number(pid));
  }
  return pids;
}

const PTY_SOURCE = fileURLToPath(new URL('../../server/native/warren-pty.c', import.meta.url));

/** Compiles the warren-pty helper into `dir` (static when possible); undefined without gcc. */
export function buildPtyHelper(dir: string): string | undefined {
  const out = join(dir, 'warren-pty');
  for (const flags of [['-static'], []]) {
    try {
      execFileSync('gcc', [...flags, '-O2', '-Wall', '-Wextra', '-o', out, PTY_SOURCE], { stdio: 'ignore' });
      if (existsSync(out)) return out;
    } catch {
      // try without -static (no static libc installed), then give up
    }
  }
  return undefined;
}
