import { mkdtempSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EnvMap, type ExecuteLanguage, type ExecuteParams, type ExecuteResponse, rfc3339 } from '@warren/protocol';
import { findExecutable } from './executable.ts';
import type { KernelService } from './kernel.ts';
import type { ProcessManager } from './process-manager.ts';
import { noRichOutput, outcomeOf, prepareRun, type RunDeps, secondsOf, timeoutMsOf } from './run-context.ts';
import type { AgentStats } from './stats.ts';

/** Default `/execute` timeout, in seconds. */
export const EXECUTE_DEFAULT_TIMEOUT_SECONDS = 120;

/** Options of one {@link CodeExecutor.execute} call. */
export interface ExecuteOptions {
  /**
   * The agent's own warm-up of this path: not counted in the agent's stats, and a
   * kernel run is kept out of the kernel's history and execution count.
   * @default false
   */
  warmUp?: boolean;
}

/** How one language's source file is run. */
interface Launch {
  command: string;
  args: string[];
  env?: EnvMap;
}

const sourceFileName: Record<ExecuteLanguage, string> = {
  python: 'main.py',
  // .cjs: CommonJS whatever package.json sits above the temp dir, so `require` works.
  javascript: 'main.cjs',
  bash: 'main.sh',
  go: 'main.go',
};

// Builds in the temp dir (no go.mod needed), then runs the binary in the caller's workdir.
const GO_BUILD_AND_RUN = '(cd "$1" && exec "$2" build -o main main.go) || exit $?; exec "$1/main"';

/** A language's source written to a fresh temp dir, and how to run it. */
export interface PreparedSource {
  dir: string;
  launch: Launch;
  /** Removes the temp dir. */
  cleanup(): Promise<void>;
}

/**
 * Writes `code` to a private temp dir and works out the command that runs it.
 * The file operations are synchronous: on the sandbox's own disk each takes
 * microseconds, where the async ones cost about ten round trips through
 * libuv's thread pool per run.
 */
export async function prepareSource(language: ExecuteLanguage, code: string, env: EnvMap): Promise<PreparedSource> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-exec-'));
  const file = join(dir, sourceFileName[language]);
  const cleanup = async () => {
    try {
      // The usual case: only the source file. Whatever else a run left there (a go binary, files the
      // program wrote beside itself) is removed asynchronously, so a large tree never blocks the agent.
      unlinkSync(file);
      rmdirSync(dir);
    } catch {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  };
  try {
    writeFileSync(file, code, { mode: 0o600 });
    return { dir, launch: await launchFor(language, dir, file, env), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function launchFor(language: ExecuteLanguage, dir: string, file: string, env: EnvMap): Promise<Launch> {
  switch (language) {
    case 'python': {
      const python = (await findExecutable('python3', env.PATH)) ?? (await findExecutable('python', env.PATH));
      return { command: python ?? 'python3', args: [file] };
    }
    case 'javascript': {
      // The agent's own node runs the code when the template has none.
      const node = (await findExecutable('node', env.PATH)) ?? process.execPath;
      return { command: node, args: [file] };
    }
    case 'bash': {
      const shell = (await findExecutable('bash', env.PATH)) ?? '/bin/sh';
      return { command: shell, args: [file] };
    }
    case 'go': {
      const go = (await findExecutable('go', env.PATH)) ?? (await findExecutable('go', '/usr/local/go/bin')) ?? 'go';
      const home = env.HOME ?? '/root';
      return {
        command: '/bin/sh',
        args: ['-c', GO_BUILD_AND_RUN, 'sh', dir, go],
        env: {
          GOCACHE: env.GOCACHE ?? join(home, '.cache', 'go-build'),
          GOPATH: env.GOPATH ?? join(home, 'go'),
        },
      };
    }
  }
}

/**
 * Runs `/execute` requests. Python goes to the sandbox's Jupyter kernel when
 * there is one (state persists across calls); everything else, and python
 * without a kernel, runs as one fresh process per call from a temp file.
 */
export class CodeExecutor {
  readonly #deps: RunDeps;
  readonly #processes: ProcessManager;
  readonly #kernel: KernelService | undefined;
  readonly #stats: AgentStats | undefined;

  constructor(deps: RunDeps & { processes: ProcessManager; kernel?: KernelService; stats?: AgentStats }) {
    this.#deps = deps;
    this.#processes = deps.processes;
    this.#kernel = deps.kernel;
    this.#stats = deps.stats;
  }

  /**
   * Runs code to completion. A failing program or a timeout is a normal
   * result (`success: false`), never an error.
   * @throws {ServiceError} `DIRECTORY_NOT_FOUND` for a missing workdir.
   */
  async execute(params: ExecuteParams, signal?: AbortSignal, options: ExecuteOptions = {}): Promise<ExecuteResponse> {
    const ctx = await prepareRun(this.#deps, params);
    const timeoutMs = timeoutMsOf(params.timeoutSeconds, EXECUTE_DEFAULT_TIMEOUT_SECONDS);
    const warmUp = options.warmUp === true;
    const end = warmUp ? undefined : this.#stats?.beginExecution(params.language);
    try {
      if (params.language === 'python' && this.#kernel) {
        // Only the API-managed layers: the kernel process already has the base and template env.
        const overlay = { ...this.#deps.envStore.all(), ...(params.env ?? {}) };
        const viaKernel = await this.#kernel.execute(params.code, ctx, overlay, timeoutMs, signal, { warmUp });
        if (viaKernel !== undefined) return viaKernel;
      }
      return await this.#runProcess(params, ctx, timeoutMs, signal);
    } finally {
      end?.();
    }
  }

  async #runProcess(
    params: ExecuteParams,
    ctx: { cwd: string; env: EnvMap },
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<ExecuteResponse> {
    const source = await prepareSource(params.language, params.code, ctx.env);
    try {
      const { launch } = source;
      const proc = this.#processes.start({
        command: launch.command,
        args: launch.args,
        cwd: ctx.cwd,
        env: { ...ctx.env, ...launch.env },
        timeoutMs,
        maxOutputBytes: this.#deps.config.maxOutputBytes,
      });
      const cancel = () => proc.killGroup('SIGKILL');
      signal?.addEventListener('abort', cancel, { once: true });
      if (signal?.aborted) cancel();
      const result = await proc.wait().finally(() => signal?.removeEventListener('abort', cancel));
      const { success, stderr, error } = outcomeOf(result, 'Execution', timeoutMs);
      return {
        success,
        stdout: result.stdout,
        stderr,
        exit_code: result.exitCode,
        execution_time: secondsOf(result.durationMs),
        timestamp: rfc3339(),
        language: params.language,
        ...noRichOutput(),
        stdout_truncated: result.stdoutTruncated,
        stderr_truncated: result.stderrTruncated,
        timed_out: result.timedOut,
        ...(error === undefined ? {} : { error }),
      };
    } finally {
      await source.cleanup();
    }
  }
}
