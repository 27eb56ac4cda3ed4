import { type CommandParams, type CommandResponse, rfc3339 } from '@warren/protocol';
import type { ProcessManager } from './process-manager.ts';
import { outcomeOf, prepareRun, type RunDeps, secondsOf, timeoutMsOf } from './run-context.ts';
import type { AgentStats } from './stats.ts';

/** Default `/commands/run` timeout, in seconds. */
export const COMMAND_DEFAULT_TIMEOUT_SECONDS = 30;

/** Runs `/commands/run` requests. */
export class CommandRunner {
  readonly #deps: RunDeps;
  readonly #processes: ProcessManager;
  readonly #stats: AgentStats | undefined;

  constructor(deps: RunDeps & { processes: ProcessManager; stats?: AgentStats }) {
    this.#deps = deps;
    this.#processes = deps.processes;
    this.#stats = deps.stats;
  }

  /**
   * Runs a command to completion: `command` + `args` via exec, or a bare
   * `command` string through `/bin/sh -c`. A non-zero exit or a timeout is a
   * normal result.
   * @throws {ServiceError} `DIRECTORY_NOT_FOUND` for a missing workdir.
   */
  async run(params: CommandParams): Promise<CommandResponse> {
    const ctx = await prepareRun(this.#deps, params);
    const timeoutMs = timeoutMsOf(params.timeoutSeconds, COMMAND_DEFAULT_TIMEOUT_SECONDS);
    const [command, args] =
      params.args === undefined ? ['/bin/sh', ['-c', params.command]] : [params.command, params.args];
    const end = this.#stats?.beginExecution('command');
    const result = await this.#processes
      .run({
        command,
        args,
        cwd: ctx.cwd,
        env: ctx.env,
        timeoutMs,
        maxOutputBytes: this.#deps.config.maxOutputBytes,
      })
      .finally(() => end?.());
    const { success, stderr, error } = outcomeOf(result, 'Command', timeoutMs);
    return {
      success,
      stdout: result.stdout,
      stderr,
      exit_code: result.exitCode,
      execution_time: secondsOf(result.durationMs),
      command: params.command,
      pid: result.pid ?? null,
      timestamp: rfc3339(),
      stdout_truncated: result.stdoutTruncated,
      stderr_truncated: result.stderrTruncated,
      timed_out: result.timedOut,
      ...(error === undefined ? {} : { error }),
    };
  }
}
