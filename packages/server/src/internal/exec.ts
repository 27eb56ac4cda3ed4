import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

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

/**
 * Runs a host command with an argument array (never a shell string).
 * @throws CommandError when it exits non-zero, unless `allowFailure` is set.
 */
export function run(
  argv: readonly string[],
  options: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {},
): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const result = {
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (result.code !== 0 && !options.allowFailure) reject(new CommandError(argv, result));
      else resolve(result);
    });
    if (child.stdin) {
      // A command may exit without reading all of its input; that is its answer, not our error.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}

/**
 * Runs a command whose output goes to a log file, and resolves when it exits
 * (not when its output closes: processes it leaves behind, like a container's
 * init held by `crun create`, keep the file open).
 * @throws CommandError when it exits non-zero, with the log's tail as stderr.
 */
export function runLogged(
  argv: readonly string[],
  logPath: string,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('runLogged: empty argv');
  const fd = openSync(logPath, 'a', 0o600);
  return new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], timeout: options.timeoutMs ?? 60_000 });
    closeSync(fd);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) return resolve();
      const tail = readFileSync(logPath, 'utf8').slice(-2000);
      reject(new CommandError(argv, { code: code ?? (signal ? 128 : 1), stdout: '', stderr: tail }));
    });
  });
}
