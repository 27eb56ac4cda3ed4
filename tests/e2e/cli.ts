import { execFile, spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

/** The real `warren` executable of this repository. */
export const WARREN_BIN = resolve(fileURLToPath(import.meta.url), '../../../packages/cli/bin/warren.mjs');

export interface CLIResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Peak resident set size of the CLI process in KiB (with `measureRss`, from GNU time). */
  maxRssKiB?: number;
}

/** The environment the CLI reads its server and key from (no config file: a temp HOME/XDG dir is not needed). */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  const ctx = inject('warren');
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    // An empty file path makes the CLI fall back to XDG, which points at nothing here.
    XDG_CONFIG_HOME: '/nonexistent-warren-cli-test',
    WARREN_URL: ctx.baseURL,
    WARREN_API_KEY: ctx.apiKey,
    ...extra,
  };
}

/**
 * Runs `warren <args>` as a child process and collects its exit code and
 * output. `input` is written to its stdin. The time limit only stops a hung
 * CLI; it is not an assertion.
 */
export function warren(
  args: string[],
  options: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number; measureRss?: boolean } = {},
): Promise<CLIResult> {
  const rssFile = options.measureRss ? join(tmpdir(), `warren-cli-rss-${process.pid}-${Date.now()}`) : undefined;
  const argv = [process.execPath, WARREN_BIN, ...args];
  const [cmd, ...rest] = rssFile ? ['/usr/bin/time', '-f', '%M', '-o', rssFile, ...argv] : argv;
  return new Promise((ok, fail) => {
    const child = spawn(cmd as string, rest, {
      env: options.env ?? cliEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', fail);
    child.once('close', (code) => {
      clearTimeout(timer);
      const result: CLIResult = {
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (!rssFile) return ok(result);
      readFile(rssFile, 'utf8')
        .then((text) => {
          // GNU time prints "Command exited with non-zero status N" before the number on failure.
          result.maxRssKiB = Number(text.trim().split('\n').at(-1));
          return rm(rssFile, { force: true });
        })
        .then(() => ok(result), fail);
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a command and resolves with its stdout; rejects on a non-zero exit. */
export function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((ok, fail) => {
    execFile(cmd, args, { env: env ?? process.env, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) fail(new Error(`${cmd} ${args.join(' ')}: ${error.message}\n${stderr}`));
      else ok(stdout);
    });
  });
}
