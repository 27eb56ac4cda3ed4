import { spawn } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { ReadyCheck } from '@warren/protocol';
import { buildChildEnv } from './child-env.ts';
import type { EnvStore } from './env-store.ts';
import type { ManagedProcess, ProcessManager } from './process-manager.ts';

/** `none`: the template has no start command. `starting` until the readiness check passes (`ready`) or gives up (`failed`). */
export type StartCommandState = 'none' | 'starting' | 'ready' | 'failed';

/** Output of the start command kept for `/health` when it fails. */
const KEPT_OUTPUT_BYTES = 16 * 1024;
/** Longest one readiness probe may take. */
const PROBE_TIMEOUT_MS = 5_000;

export interface StartCommandDeps {
  command: string | null;
  readyCheck: ReadyCheck | null;
  workdir: string;
  templateEnv: Readonly<Record<string, string>>;
  envStore: EnvStore;
  processes: ProcessManager;
  log: (line: string) => void;
}

/**
 * The template's start command (e.g. a web server): started once when the
 * agent starts, in its own process group with no timeout, then probed with
 * the template's readiness check. The server hands a sandbox out only once
 * `/health` reports `start_command: "ready"`.
 */
export class StartCommand {
  state: StartCommandState;
  error: string | null = null;
  private process: ManagedProcess | undefined;
  private readonly deps: StartCommandDeps;

  constructor(deps: StartCommandDeps) {
    this.deps = deps;
    this.state = deps.command === null ? 'none' : 'starting';
  }

  start(): void {
    const { command, readyCheck } = this.deps;
    if (command === null) return;
    this.process = this.deps.processes.start({
      command: '/bin/sh',
      args: ['-c', command],
      cwd: this.deps.workdir,
      env: buildChildEnv({ template: this.deps.templateEnv, global: this.deps.envStore.all() }),
      timeoutMs: 0,
      maxOutputBytes: KEPT_OUTPUT_BYTES,
    });
    const proc = this.process;
    void proc.wait().then((r) => {
      if (this.state === 'ready') return;
      this.fail(`start command exited with code ${r.exitCode} before it was ready: ${this.tail()}`);
    });
    if (readyCheck === null) {
      this.state = 'ready';
      return;
    }
    void this.probeUntilReady(readyCheck);
  }

  private tail(): string {
    const out = this.process?.output();
    if (!out) return '';
    return `${out.stdout}${out.stderr}`.slice(-2000);
  }

  private fail(message: string): void {
    if (this.state !== 'starting') return;
    this.state = 'failed';
    this.error = message;
    this.deps.log(`start command failed: ${message}`);
  }

  private async probeUntilReady(check: ReadyCheck): Promise<void> {
    const deadline = Date.now() + check.timeoutMs;
    while (this.state === 'starting') {
      if (await probe(check, this.deps).catch(() => false)) {
        if (this.state === 'starting') this.state = 'ready';
        return;
      }
      if (Date.now() >= deadline) {
        this.fail(`readiness check (${check.type}) did not pass within ${check.timeoutMs} ms`);
        return;
      }
      await new Promise((r) => setTimeout(r, check.intervalMs));
    }
  }
}

function probePort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function probeUrl(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      resolve(false);
      return;
    }
    if (parsed.protocol !== 'http:') {
      resolve(false);
      return;
    }
    const req = request(parsed, { method: 'GET', timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function probeProcess(name: string): Promise<boolean> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === name) return true;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((arg) => arg === name || arg.endsWith(`/${name}`))) return true;
  }
  return false;
}

function probeCommand(command: string, deps: StartCommandDeps): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: deps.workdir,
      env: buildChildEnv({ template: deps.templateEnv, global: deps.envStore.all() }),
      stdio: 'ignore',
      timeout: PROBE_TIMEOUT_MS,
    });
    child.on('error', () => resolve(false));
    child.on('exit', (code) => resolve(code === 0));
  });
}

function probe(check: ReadyCheck, deps: StartCommandDeps): Promise<boolean> {
  switch (check.type) {
    case 'port':
      return probePort(check.port);
    case 'url':
      return probeUrl(check.url);
    case 'file':
      return access(check.path).then(
        () => true,
        () => false,
      );
    case 'process':
      return probeProcess(check.name);
    case 'command':
      return probeCommand(check.command, deps);
  }
}
