import { mkdirSync, type Stats, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type EnvMap, ErrorCode, ServiceError } from '@warren/protocol';
import type { AgentConfig } from '../config.ts';
import { buildChildEnv } from './child-env.ts';
import type { EnvStore } from './env-store.ts';
import type { ProcessResult } from './process-manager.ts';

/** Longest timeout a request may ask for, in seconds. */
export const MAX_TIMEOUT_SECONDS = 3600;

/** What every child launch needs from the agent. */
export interface RunDeps {
  config: AgentConfig;
  envStore: EnvStore;
}

/** Working directory and environment of one child launch. */
export interface RunContext {
  cwd: string;
  env: EnvMap;
}

/**
 * Resolves the working directory (relative paths are taken from the default
 * workdir, which is created when missing) and layers the environment. The
 * directory is checked synchronously: a `stat` of the sandbox's own disk
 * takes microseconds, a round trip through libuv's thread pool far longer.
 * @throws {ServiceError} `DIRECTORY_NOT_FOUND` when a requested workdir is not a directory.
 */
export async function prepareRun(
  deps: RunDeps,
  request: { workdir?: string | undefined; env?: EnvMap | undefined },
): Promise<RunContext> {
  const fallback = deps.config.workdir;
  const cwd = request.workdir === undefined ? fallback : resolve(fallback, request.workdir);
  let st = statOrUndefined(cwd);
  if (st === undefined && cwd === fallback) {
    try {
      mkdirSync(cwd, { recursive: true });
    } catch {
      // reported below as not a directory
    }
    st = statOrUndefined(cwd);
  }
  if (!st?.isDirectory()) {
    throw new ServiceError(ErrorCode.DIRECTORY_NOT_FOUND, `Directory not found: ${cwd}`, { path: cwd });
  }
  const env = buildChildEnv({ template: deps.config.templateEnv, global: deps.envStore.all(), request: request.env });
  return { cwd, env };
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined; // missing, not a directory on the way, not permitted: all "not found" here
  }
}

/** A requested timeout in milliseconds: the default when absent, capped at the maximum. */
export function timeoutMsOf(seconds: number | undefined, defaultSeconds: number): number {
  const s = seconds === undefined || seconds <= 0 ? defaultSeconds : Math.min(seconds, MAX_TIMEOUT_SECONDS);
  return Math.round(s * 1000);
}

/** Seconds with millisecond precision, as the wire's `execution_time`. */
export function secondsOf(ms: number): number {
  return Math.round(ms) / 1000;
}

/** Appends a line (a timeout or start-failure notice) to captured stderr. */
export function appendLine(stderr: string, line: string): string {
  if (stderr === '' || stderr.endsWith('\n')) return `${stderr}${line}\n`;
  return `${stderr}\n${line}\n`;
}

/**
 * How a finished run failed, for its response: the timeout notice or the
 * start failure (also appended to stderr), and whether it succeeded.
 */
export function outcomeOf(
  result: Pick<ProcessResult, 'exitCode' | 'timedOut' | 'spawnError' | 'stderr'>,
  what: 'Execution' | 'Command',
  timeoutMs: number,
): { success: boolean; stderr: string; error: string | undefined } {
  const timeoutNotice = `${what} timed out after ${timeoutMs / 1000}s`;
  const error = result.timedOut ? timeoutNotice : result.spawnError;
  return {
    success: result.exitCode === 0 && !result.timedOut,
    stderr: error === undefined ? result.stderr : appendLine(result.stderr, error),
    error,
  };
}

/** The rich-output fields of an execution result that produced none (a fresh array each call). */
export function noRichOutput(): {
  png: null;
  html: null;
  json: null;
  svg: null;
  markdown: null;
  result: null;
  rich_outputs: [];
} {
  return { png: null, html: null, json: null, svg: null, markdown: null, result: null, rich_outputs: [] };
}
