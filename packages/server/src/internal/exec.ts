import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Thrown when a host command exits non-zero. */
export class CommandError extends Error {
  readonly result: RunResult;
  constructor(argv: readonly string[], result: RunResult) {
    super(`${argv.join(' ')} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
    this.name = 'CommandError';
    this.result = result;
  }
}

/** What the spawner answers for one command. */
interface SpawnerAnswer {
  id: number;
  code?: number | null;
  signal?: string | null;
  stdout?: string;
  stderr?: string;
  /** errno name when the command could not start (ENOENT, EACCES…). */
  error?: string;
  message?: string;
}

interface SpawnerRequest {
  argv: readonly string[];
  input?: string | undefined;
  logPath?: string | undefined;
  timeoutMs: number;
}

const SPAWNER_SOURCE = fileURLToPath(new URL('../../native/warren-spawner.py', import.meta.url));

/**
 * The server's host commands go through one long-lived `warren-spawner.py`
 * process: `fork()` of the server costs milliseconds per command (it grows
 * with the server's memory) and blocks the event loop while it runs; the
 * spawner starts commands with vfork, off the loop. When it cannot start
 * (no python3), commands are spawned directly. Set `WARREN_SPAWNER=direct`
 * to always spawn directly.
 */
class Spawner {
  private child: ChildProcess | undefined;
  private buffered = '';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (a: SpawnerAnswer) => void; reject: (e: Error) => void }>();
  /** Set once the spawner failed to start; from then on commands are spawned directly. */
  unavailable = process.env.WARREN_SPAWNER === 'direct';

  request(req: SpawnerRequest): Promise<SpawnerAnswer> {
    const child = this.child ?? this.start();
    const id = this.nextId++;
    const line = JSON.stringify({
      id,
      argv: req.argv,
      timeout_ms: req.timeoutMs,
      ...(req.input === undefined ? {} : { input: req.input }),
      ...(req.logPath === undefined ? {} : { log_path: req.logPath }),
    });
    return new Promise<SpawnerAnswer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.setRef(child, true);
      child.stdin!.write(`${line}\n`);
    });
  }

  private start(): ChildProcess {
    // Debian's python3 first: a python3 earlier on PATH may be a version manager's slow shim.
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    // Its own process group: a Ctrl-C or a signal to the server's group must not take it down before the
    // server's shutdown has run its last commands (it exits when its stdin closes, i.e. with the server).
    const child = spawn(python, ['-I', '-S', SPAWNER_SOURCE], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    this.child = child;
    this.buffered = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => this.onData(chunk));
    child.stdin!.on('error', () => undefined);
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') this.unavailable = true;
      this.fail(child, new Error(`warren-spawner: ${err.message}`));
    });
    child.on('exit', (code, signal) => this.fail(child, new Error(`warren-spawner exited (${code ?? signal})`)));
    this.setRef(child, false);
    return child;
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      let answer: SpawnerAnswer;
      try {
        answer = JSON.parse(line) as SpawnerAnswer;
      } catch {
        continue;
      }
      const waiter = this.pending.get(answer.id);
      if (!waiter) continue;
      this.pending.delete(answer.id);
      if (this.pending.size === 0 && this.child) this.setRef(this.child, false);
      waiter.resolve(answer);
    }
  }

  /** The spawner is gone: every command waiting on it fails; the next one starts a new spawner. */
  private fail(child: ChildProcess, err: Error): void {
    if (this.child !== child) return;
    this.child = undefined;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const w of waiting) w.reject(err);
  }

  /** An idle spawner does not keep the server's process alive. */
  private setRef(child: ChildProcess, ref: boolean): void {
    for (const handle of [child, child.stdin, child.stdout] as Array<{ ref(): void; unref(): void } | null>) {
      if (ref) handle?.ref();
      else handle?.unref();
    }
  }
}

const spawner = new Spawner();

/**
 * Runs one command through the spawner; when the spawner cannot start at all
 * (before or during this request), through `direct` instead.
 */
async function execute(req: SpawnerRequest, direct: () => Promise<RunResult>): Promise<RunResult> {
  if (spawner.unavailable) return direct();
  let answer: SpawnerAnswer;
  try {
    answer = await spawner.request(req);
  } catch (err) {
    if (!spawner.unavailable) throw err;
    return direct();
  }
  return resultOf(req.argv, answer);
}

function resultOf(argv: readonly string[], answer: SpawnerAnswer): RunResult {
  if (answer.error !== undefined) {
    const err = new Error(answer.message ?? `${argv[0]}: ${answer.error}`) as NodeJS.ErrnoException;
    err.code = answer.error;
    throw err;
  }
  return {
    code: answer.code ?? (answer.signal ? 128 : 1),
    stdout: answer.stdout ?? '',
    stderr: answer.stderr ?? '',
  };
}

/**
 * Runs a host command with an argument array (never a shell string).
 * @throws CommandError when it exits non-zero, unless `allowFailure` is set.
 */
export async function run(
  argv: readonly string[],
  options: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {},
): Promise<RunResult> {
  if (argv[0] === undefined) throw new Error('run: empty argv');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const result = await execute({ argv, input: options.input, timeoutMs }, () =>
    runDirect(argv, options.input, timeoutMs),
  );
  if (result.code !== 0 && !options.allowFailure) throw new CommandError(argv, result);
  return result;
}

function runDirect(argv: readonly string[], input: string | undefined, timeoutMs: number): Promise<RunResult> {
  const [cmd, ...args] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (child.stdin) {
      // A command may exit without reading all of its input; that is its answer, not our error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

/**
 * Runs a command whose output goes to a log file, and resolves when it exits
 * (not when its output closes: processes it leaves behind, like a container's
 * init left running by `crun run --detach`, keep the file open).
 * @throws CommandError when it exits non-zero, with the log's tail as stderr.
 */
export async function runLogged(
  argv: readonly string[],
  logPath: string,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  if (argv[0] === undefined) throw new Error('runLogged: empty argv');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const { code } = await execute({ argv, logPath, timeoutMs }, async () => ({
    code: await runLoggedDirect(argv, logPath, timeoutMs),
    stdout: '',
    stderr: '',
  }));
  if (code === 0) return;
  const tail = readFileSync(logPath, 'utf8').slice(-2000);
  throw new CommandError(argv, { code, stdout: '', stderr: tail });
}

function runLoggedDirect(argv: readonly string[], logPath: string, timeoutMs: number): Promise<number> {
  const [cmd, ...args] = argv as [string, ...string[]];
  const fd = openSync(logPath, 'a', 0o600);
  return new Promise<number>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], timeout: timeoutMs });
    closeSync(fd);
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
