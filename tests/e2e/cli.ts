import { execFile, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

/** The real `warren` executable of this repository. */
export const WARREN_BIN = resolve(fileURLToPath(import.meta.url), '../../../packages/cli/bin/warren.mjs');

export interface CLIResult {
  code: number | null;
  stdout: string;
  stderr: string;
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
  options: { env?: Record<string, string>; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<CLIResult> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [WARREN_BIN, ...args], {
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
      ok({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
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
