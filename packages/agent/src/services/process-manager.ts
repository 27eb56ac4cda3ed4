import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { BoundedOutput } from './bounded-output.ts';
import { groupMembers, processStartTicks } from './proc-fs.ts';

/** How to start a child process. */
export interface SpawnOptions {
  /** Executable name or path, run via exec (no shell). */
  command: string;
  args: readonly string[];
  /** Working directory; must exist. */
  cwd: string;
  /** Complete environment of the child; nothing is inherited from the agent. */
  env: Readonly<Record<string, string>>;
  /** Kill the process group after this long; 0 disables the timeout. */
  timeoutMs: number;
  /** Output kept per stream. */
  maxOutputBytes: number;
  /** Live output, for streaming callers; called before bytes are capped. */
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** `pipe` gives the child a writable stdin ({@link ManagedProcess.stdin}). @default 'ignore' */
  stdin?: 'ignore' | 'pipe';
  /** Opens fd 3 of the child as a pipe the agent writes to ({@link ManagedProcess.control}). @default false */
  controlPipe?: boolean;
}

/** Output collected so far by a running (or finished) process. */
export interface OutputSnapshot {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

/** Outcome of a finished child process. */
export interface ProcessResult {
  /** Exit status; 128+signal when killed by a signal, 124 on timeout, 127 when it could not start. */
  exitCode: number;
  /** Signal that ended the process, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  /** The process could not be started (e.g. executable not found). */
  spawnError: string | undefined;
  durationMs: number;
  pid: number | undefined;
}

/** Exit code reported when a process group is killed on timeout. */
export const TIMEOUT_EXIT_CODE = 124;
/** Exit code reported when the executable cannot be started. */
export const NOT_STARTED_EXIT_CODE = 127;

/**
 * After the leader exits, how long to keep reading pipes that a leftover
 * background process still holds open before returning without its output.
 */
const PIPE_DRAIN_GRACE_MS = 200;

let nextId = 0;

/**
 * One child process, leader of its own process group. A timeout or `kill()`
 * signals the whole group, so grandchildren end with it.
 */
export class ManagedProcess {
  /** Agent-local id, unique for the agent's lifetime. */
  readonly id: string;
  readonly pid: number | undefined;
  readonly startedAt: Date;
  /** The child's stdin when started with `stdin: 'pipe'`, else null. */
  readonly stdin: Writable | null;
  /** The child's fd 3 when started with `controlPipe: true`, else null. */
  readonly control: Writable | null;
  readonly #child: ChildProcess;
  readonly #result: Promise<ProcessResult>;
  readonly #stdout: BoundedOutput;
  readonly #stderr: BoundedOutput;
  /** Start time of the leader in clock ticks since boot, to recognise its group after it exits. */
  readonly #startTicks: number | undefined;
  #leaderAlive: boolean;
  #timedOut = false;
  #outputPaused = false;

  constructor(options: SpawnOptions) {
    this.id = `proc_${(nextId++).toString(36)}`;
    this.startedAt = new Date();
    const started = performance.now();
    const stdout = new BoundedOutput(options.maxOutputBytes);
    const stderr = new BoundedOutput(options.maxOutputBytes);
    this.#stdout = stdout;
    this.#stderr = stderr;

    const stdio: Array<'ignore' | 'pipe'> = [options.stdin ?? 'ignore', 'pipe', 'pipe'];
    if (options.controlPipe) stdio.push('pipe');
    this.#child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: { ...options.env },
      detached: true, // setsid(): the child leads a new process group
      stdio,
      windowsHide: true,
    });
    const child = this.#child;
    this.pid = child.pid;
    this.#leaderAlive = child.pid !== undefined;
    this.#startTicks = child.pid === undefined ? undefined : processStartTicks(child.pid);
    this.stdin = child.stdin ?? null;
    this.control = options.controlPipe ? ((child.stdio[3] as Writable | null | undefined) ?? null) : null;
    // A child that exits before reading its input must not crash the agent with EPIPE.
    this.stdin?.on('error', () => undefined);
    this.control?.on('error', () => undefined);

    child.stdout?.on('data', (chunk: Buffer) => {
      options.onStdout?.(chunk);
      stdout.push(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      options.onStderr?.(chunk);
      stderr.push(chunk);
    });

    this.#result = new Promise<ProcessResult>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let graceTimer: NodeJS.Timeout | undefined;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let spawnError: string | undefined;
      let done = false;

      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        resolve({
          exitCode: exitCodeOf(exit, spawnError, this.#timedOut),
          signal: exit?.signal ?? null,
          stdout: stdout.text(),
          stderr: stderr.text(),
          stdoutTruncated: stdout.truncated,
          stderrTruncated: stderr.truncated,
          timedOut: this.#timedOut,
          spawnError,
          durationMs: performance.now() - started,
          pid: this.pid,
        });
      };

      if (options.timeoutMs > 0 && this.#leaderAlive) {
        timer = setTimeout(() => {
          this.#timedOut = true;
          this.kill('SIGKILL');
        }, options.timeoutMs);
        timer.unref();
      }

      child.once('error', (err) => {
        // Spawn failures arrive here without an 'exit'; later errors (kill of a dead pid) are harmless.
        if (child.pid === undefined) {
          spawnError = describeSpawnError(options.command, err);
          this.#leaderAlive = false;
          finish();
        }
      });
      child.once('exit', (code, signal) => {
        exit = { code, signal };
        this.#leaderAlive = false;
        clearTimeout(timer);
        // Input pipes are of no use any more, and 'close' waits for every pipe.
        this.stdin?.destroy();
        this.control?.destroy();
        // A background grandchild may hold the pipes open; stop waiting for it after a grace period
        // (which does not run while a streaming caller has paused the output).
        const giveUp = () => {
          if (this.#outputPaused) {
            graceTimer = setTimeout(giveUp, PIPE_DRAIN_GRACE_MS);
            graceTimer.unref();
            return;
          }
          child.stdout?.destroy();
          child.stderr?.destroy();
          finish();
        };
        graceTimer = setTimeout(giveUp, PIPE_DRAIN_GRACE_MS);
        graceTimer.unref();
      });
      child.once('close', finish);
    });
  }

  /** True until the group leader has exited. */
  get running(): boolean {
    return this.#leaderAlive;
  }

  /** True once the timeout fired. */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** Output collected so far (bounded like the final result). */
  output(): OutputSnapshot {
    return {
      stdout: this.#stdout.text(),
      stderr: this.#stderr.text(),
      stdoutTruncated: this.#stdout.truncated,
      stderrTruncated: this.#stderr.truncated,
    };
  }

  /** Stops reading the child's stdout and stderr: once the pipes fill, the child blocks writing. */
  pauseOutput(): void {
    this.#outputPaused = true;
    this.#outputStreams().forEach((s) => {
      s.pause();
    });
  }

  /** Reads the child's output again after {@link pauseOutput}. */
  resumeOutput(): void {
    this.#outputPaused = false;
    this.#outputStreams().forEach((s) => {
      s.resume();
    });
  }

  #outputStreams(): Readable[] {
    return [this.#child.stdout, this.#child.stderr].filter((s): s is Readable => s !== null);
  }

  /** Resolves when the process has exited and its output is collected. */
  wait(): Promise<ProcessResult> {
    return this.#result;
  }

  /**
   * Sends `signal` to the whole process group while its leader runs. A no-op
   * afterwards, so a recycled process-group id is never signalled.
   */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.#leaderAlive || this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // Group already gone: fall back to the leader alone.
      try {
        this.#child.kill(signal);
      } catch {
        // already exited
      }
    }
  }

  /**
   * Sends `signal` to every process of the group, also after the leader has
   * exited: members are then found in /proc by process group and start time
   * (no later than the leader's), so a recycled group id is never signalled.
   * Returns how many processes were signalled.
   */
  killGroup(signal: NodeJS.Signals = 'SIGKILL'): number {
    if (this.pid === undefined) return 0;
    if (this.#leaderAlive) {
      this.kill(signal);
      return 1 + this.groupMembers().length;
    }
    let count = 0;
    for (const pid of this.groupMembers()) {
      try {
        process.kill(pid, signal);
        count++;
      } catch {
        // exited meanwhile
      }
    }
    return count;
  }

  /** Pids of the processes still in this process group, the leader excluded. */
  groupMembers(): number[] {
    if (this.pid === undefined || this.#startTicks === undefined) return [];
    return groupMembers(this.pid, this.#startTicks).filter((pid) => pid !== this.pid);
  }
}

function describeSpawnError(command: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return `${command}: command not found`;
  if (err.code === 'EACCES') return `${command}: permission denied`;
  return `${command}: ${err.message}`;
}

function exitCodeOf(
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined,
  spawnError: string | undefined,
  timedOut: boolean,
): number {
  if (timedOut) return TIMEOUT_EXIT_CODE;
  if (spawnError !== undefined || exit === undefined) return NOT_STARTED_EXIT_CODE;
  if (exit.code !== null) return exit.code;
  const signo = exit.signal ? constants.signals[exit.signal] : undefined;
  return 128 + (signo ?? 0);
}

/**
 * Starts and tracks child processes. Every child leads its own process group;
 * the manager can end all of them (agent shutdown). Background processes,
 * streams and terminals are meant to start through it too.
 */
export class ProcessManager {
  readonly #live = new Map<string, ManagedProcess>();

  /** Starts a process and tracks it until it finishes. */
  start(options: SpawnOptions): ManagedProcess {
    const proc = new ManagedProcess(options);
    this.#live.set(proc.id, proc);
    void proc.wait().finally(() => this.#live.delete(proc.id));
    return proc;
  }

  /** Starts a process and waits for its result. */
  run(options: SpawnOptions): Promise<ProcessResult> {
    return this.start(options).wait();
  }

  /** Processes still running. */
  list(): ManagedProcess[] {
    return [...this.#live.values()];
  }

  /** Number of processes still running. */
  get size(): number {
    return this.#live.size;
  }

  /** Kills every tracked process group. */
  killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const proc of this.#live.values()) proc.kill(signal);
  }
}
