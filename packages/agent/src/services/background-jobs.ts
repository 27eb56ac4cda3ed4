import { randomBytes } from 'node:crypto';
import {
  type BackgroundCommandParams,
  type BackgroundExecuteParams,
  type BackgroundStartResponse,
  ErrorCode,
  type KillResponse,
  type ProcessInfo,
  type ProcessStatus,
  rfc3339,
  ServiceError,
} from '@warren/protocol';
import { prepareSource } from './code-executor.ts';
import type { ManagedProcess, ProcessManager, ProcessResult } from './process-manager.ts';
import { prepareRun, type RunDeps, secondsOf, timeoutMsOf } from './run-context.ts';
import type { AgentStats } from './stats.ts';

/** Default timeout of `/execute/background`, in seconds (the TS SDK sends 300). */
export const BACKGROUND_EXECUTE_DEFAULT_TIMEOUT_SECONDS = 300;
/** Default timeout of `/commands/background`, in seconds (both SDKs send 120). */
export const BACKGROUND_COMMAND_DEFAULT_TIMEOUT_SECONDS = 120;
/** How long a kill waits for the group to be gone before answering anyway. */
const KILL_WAIT_MS = 5000;

interface Job {
  processId: string;
  executionId: string;
  name: string | null;
  kind: 'execute' | 'command';
  language: string;
  command: string | null;
  proc: ManagedProcess;
  startedAt: Date;
  endedAt: Date | null;
  status: ProcessStatus;
  result: ProcessResult | null;
  killRequested: boolean;
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Background processes of `/execute/background` and `/commands/background`.
 * Each runs in its own process group with its own timeout; a kill or timeout
 * ends the whole group. Output is bounded per process, and only the last
 * `processHistory` finished processes are remembered.
 */
export class BackgroundJobs {
  readonly #deps: RunDeps;
  readonly #processes: ProcessManager;
  readonly #stats: AgentStats | undefined;
  /** Every remembered job, in start order. */
  readonly #jobs = new Map<string, Job>();

  constructor(deps: RunDeps & { processes: ProcessManager; stats?: AgentStats }) {
    this.#deps = deps;
    this.#processes = deps.processes;
    this.#stats = deps.stats;
  }

  /**
   * Starts code in the background (python as a plain process, not in the kernel).
   * @throws {ServiceError} `DIRECTORY_NOT_FOUND` for a missing workdir.
   */
  async startCode(params: BackgroundExecuteParams): Promise<BackgroundStartResponse> {
    const ctx = await prepareRun(this.#deps, params);
    const source = await prepareSource(params.language, params.code, ctx.env);
    const job = this.#start({
      kind: 'execute',
      language: params.language,
      command: null,
      name: params.name ?? null,
      command_: source.launch.command,
      args: source.launch.args,
      cwd: ctx.cwd,
      env: { ...ctx.env, ...source.launch.env },
      timeoutMs: timeoutMsOf(params.timeoutSeconds, BACKGROUND_EXECUTE_DEFAULT_TIMEOUT_SECONDS),
      onEnd: () => source.cleanup(),
    });
    return this.#started(job, 'Background execution started');
  }

  /**
   * Starts a command in the background: `command` + `args` via exec, or a bare `command` through `/bin/sh -c`.
   * @throws {ServiceError} `DIRECTORY_NOT_FOUND` for a missing workdir.
   */
  async startCommand(params: BackgroundCommandParams): Promise<BackgroundStartResponse> {
    const ctx = await prepareRun(this.#deps, params);
    const [command, args] =
      params.args === undefined ? ['/bin/sh', ['-c', params.command]] : [params.command, params.args];
    const job = this.#start({
      kind: 'command',
      language: 'bash',
      command: params.args === undefined ? params.command : [params.command, ...params.args].join(' '),
      name: params.name ?? null,
      command_: command,
      args,
      cwd: ctx.cwd,
      env: ctx.env,
      timeoutMs: timeoutMsOf(params.timeoutSeconds, BACKGROUND_COMMAND_DEFAULT_TIMEOUT_SECONDS),
      onEnd: () => undefined,
    });
    return this.#started(job, 'Background command started');
  }

  /** Running and remembered finished processes, oldest first. */
  list(): ProcessInfo[] {
    return [...this.#jobs.values()].map((job) => this.#info(job));
  }

  /** One process by id. @throws {ServiceError} `PROCESS_NOT_FOUND`. */
  get(processId: string): ProcessInfo {
    return this.#info(this.#find(processId));
  }

  /**
   * Kills a background process and everything in its process group, and waits
   * until they are gone. Killing a finished process is not an error: it
   * answers its final status (and ends anything its group left behind).
   * @throws {ServiceError} `PROCESS_NOT_FOUND` for an unknown id.
   */
  async kill(processId: string): Promise<KillResponse> {
    const job = this.#find(processId);
    const wasRunning = job.endedAt === null;
    if (wasRunning) {
      // A leader that already exited (its output still draining) finishes with its own status.
      if (job.proc.running) {
        job.killRequested = true;
        job.proc.killGroup('SIGKILL');
      }
      await Promise.race([job.proc.wait(), sleep(KILL_WAIT_MS)]);
    }
    await sweepGroup(job.proc);
    const status: ProcessStatus = job.status === 'running' && job.killRequested ? 'killed' : job.status;
    return {
      process_id: job.processId,
      status,
      message: wasRunning ? 'Process terminated successfully' : `Process had already finished (${status})`,
      timestamp: rfc3339(),
    };
  }

  /** Kills every running background process group (agent shutdown). */
  killAll(): void {
    for (const job of this.#jobs.values()) if (job.proc.running) job.proc.killGroup('SIGKILL');
  }

  #find(processId: string): Job {
    const job = this.#jobs.get(processId);
    if (!job) {
      throw new ServiceError(ErrorCode.PROCESS_NOT_FOUND, `Process not found: ${processId}`, {
        details: { process_id: processId },
      });
    }
    return job;
  }

  #start(spec: {
    kind: Job['kind'];
    language: string;
    command: string | null;
    name: string | null;
    command_: string;
    args: readonly string[];
    cwd: string;
    env: Record<string, string>;
    timeoutMs: number;
    onEnd: () => unknown;
  }): Job {
    const end = this.#stats?.beginExecution(`background_${spec.kind}`);
    const proc = this.#processes.start({
      command: spec.command_,
      args: spec.args,
      cwd: spec.cwd,
      env: spec.env,
      timeoutMs: spec.timeoutMs,
      maxOutputBytes: this.#deps.config.backgroundOutputBytes,
    });
    const job: Job = {
      processId: newId('proc'),
      executionId: newId('exec'),
      name: spec.name,
      kind: spec.kind,
      language: spec.language,
      command: spec.command,
      proc,
      startedAt: proc.startedAt,
      endedAt: null,
      status: 'running',
      result: null,
      killRequested: false,
    };
    this.#jobs.set(job.processId, job);
    void proc.wait().then(async (result) => {
      job.result = result;
      job.endedAt = new Date();
      job.status = statusOf(job, result);
      end?.();
      if (result.timedOut) await sweepGroup(proc);
      await spec.onEnd();
      this.#prune();
    });
    return job;
  }

  #started(job: Job, message: string): BackgroundStartResponse {
    return {
      process_id: job.processId,
      execution_id: job.executionId,
      status: job.status,
      name: job.name,
      pid: job.proc.pid ?? null,
      start_time: rfc3339(job.startedAt),
      message,
    };
  }

  /** Forgets the oldest finished jobs beyond the history size. */
  #prune(): void {
    let finished = 0;
    for (const job of this.#jobs.values()) if (job.endedAt !== null) finished++;
    for (const [id, job] of this.#jobs) {
      if (finished <= this.#deps.config.processHistory) break;
      if (job.endedAt === null) continue;
      this.#jobs.delete(id);
      finished--;
    }
  }

  #info(job: Job): ProcessInfo {
    const output = job.result
      ? {
          stdout: job.result.stdout,
          stderr: job.result.stderr,
          stdoutTruncated: job.result.stdoutTruncated,
          stderrTruncated: job.result.stderrTruncated,
        }
      : job.proc.output();
    const endIso = job.endedAt ? rfc3339(job.endedAt) : null;
    const seconds = secondsOf((job.endedAt ?? new Date()).getTime() - job.startedAt.getTime());
    return {
      process_id: job.processId,
      execution_id: job.executionId,
      name: job.name,
      status: job.status,
      kind: job.kind,
      language: job.language,
      command: job.command,
      pid: job.proc.pid ?? null,
      start_time: rfc3339(job.startedAt),
      started_at: rfc3339(job.startedAt),
      end_time: endIso,
      completed_at: endIso,
      exit_code: job.result ? job.result.exitCode : null,
      duration: seconds,
      execution_time: seconds,
      stdout: output.stdout,
      stderr: output.stderr,
      stdout_truncated: output.stdoutTruncated,
      stderr_truncated: output.stderrTruncated,
    };
  }
}

function statusOf(job: Job, result: ProcessResult): ProcessStatus {
  if (job.killRequested) return 'killed';
  if (result.timedOut) return 'timeout';
  return result.exitCode === 0 ? 'completed' : 'failed';
}

/** Kills what is left of a process group after its leader is gone, until nothing is (bounded wait). */
async function sweepGroup(proc: ManagedProcess): Promise<void> {
  const until = Date.now() + KILL_WAIT_MS;
  while (Date.now() < until) {
    if (proc.running) {
      proc.killGroup('SIGKILL');
    } else if (proc.groupMembers().length === 0) {
      return;
    } else {
      proc.killGroup('SIGKILL');
    }
    await sleep(25);
  }
}
