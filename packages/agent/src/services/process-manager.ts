import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import { BoundedOutput } from './bounded-output.ts';
import type { ExecHelper, HelperChild, HelperChildEvents, HelperStream } from './exec-helper.ts';
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
  /**
   * Exit status; 128+signal when killed by a signal, 124 on timeout, 127 when it could not start (or was
   * lost: the exec helper that started it died, and its process group was killed).
   */
  exitCode: number;
  /** Signal that ended the process, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  /** The process could not be started (e.g. executable not found), or was lost with the exec helper. */
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

type Exit = { code: number | null; signal: NodeJS.Signals | null };

/**
 * One child process, leader of its own process group. A timeout or `kill()`
 * signals the whole group, so grandchildren end with it.
 *
 * A child with no stdin pipe and no control pipe starts through the exec
 * helper when one is given and ready (posix_spawn in a small process instead
 * of a fork of the agent); any other, or when the helper is not there, with
 * `child_process.spawn`. Both behave the same to the caller.
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
  /** The direct child, or the helper's handle of it. */
  readonly #child: ChildProcess | HelperChild | undefined;
  readonly #result: Promise<ProcessResult>;
  readonly #stdout: BoundedOutput;
  readonly #stderr: BoundedOutput;
  readonly #options: SpawnOptions;
  readonly #started: number;
  /** Start time of the leader in clock ticks since boot, to recognise its group after it exits. */
  readonly #startTicks: number | undefined;
  #leaderAlive: boolean;
  #timedOut = false;
  #outputPaused = false;
  #resolve: (result: ProcessResult) => void = () => undefined;
  #done = false;
  #exit: Exit | undefined;
  #spawnError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  /** Helper output that arrived while paused, delivered in order on resume (null: end of that stream). */
  #held: Array<{ stream: HelperStream; chunk: Buffer | null }> = [];
  /** Helper streams not yet at end of file. */
  #openStreams = 2;

  constructor(options: SpawnOptions, helper?: ExecHelper) {
    this.id = `proc_${(nextId++).toString(36)}`;
    this.startedAt = new Date();
    this.#started = performance.now();
    this.#options = options;
    this.#stdout = new BoundedOutput(options.maxOutputBytes);
    this.#stderr = new BoundedOutput(options.maxOutputBytes);
    this.#result = new Promise<ProcessResult>((resolve) => {
      this.#resolve = resolve;
    });

    const viaHelper =
      helper !== undefined && (options.stdin ?? 'ignore') === 'ignore' && options.controlPipe !== true
        ? helper.spawn(options, this.#helperEvents())
        : null;
    let pid: number | undefined;
    if (viaHelper === null) {
      const child = this.#spawnDirect(options);
      this.#child = child;
      pid = child.pid;
      this.stdin = child.stdin ?? null;
      this.control = options.controlPipe ? ((child.stdio[3] as Writable | null | undefined) ?? null) : null;
      // A child that exits before reading its input must not crash the agent with EPIPE.
      this.stdin?.on('error', () => undefined);
      this.control?.on('error', () => undefined);
    } else {
      this.stdin = null;
      this.control = null;
      if ('pid' in viaHelper) {
        this.#child = viaHelper.child;
        pid = viaHelper.pid;
      } else {
        this.#spawnError = describeSpawnError(options.command, viaHelper.error);
        // Reported asynchronously, like a failed direct spawn.
        queueMicrotask(() => this.#finish());
      }
    }
    this.pid = pid;
    this.#leaderAlive = pid !== undefined;
    this.#startTicks = pid === undefined ? undefined : processStartTicks(pid);

    if (options.timeoutMs > 0 && this.#leaderAlive) {
      this.#timer = setTimeout(() => {
        this.#timedOut = true;
        this.kill('SIGKILL');
      }, options.timeoutMs);
      this.#timer.unref();
    }
  }

  #spawnDirect(options: SpawnOptions): ChildProcess {
    const stdio: Array<'ignore' | 'pipe'> = [options.stdin ?? 'ignore', 'pipe', 'pipe'];
    if (options.controlPipe) stdio.push('pipe');
    const child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: { ...options.env },
      detached: true, // setsid(): the child leads a new process group
      stdio,
      windowsHide: true,
    });
    child.stdout?.on('data', (chunk: Buffer) => this.#deliver(1, chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.#deliver(2, chunk));
    child.once('error', (err) => {
      // Spawn failures arrive here without an 'exit'; later errors (kill of a dead pid) are harmless.
      if (child.pid === undefined) {
        this.#spawnError = describeSpawnError(options.command, err);
        this.#leaderAlive = false;
        this.#finish();
      }
    });
    child.once('exit', (code, signal) =>
      this.#onLeaderExit({ code, signal }, () => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }),
    );
    child.once('close', () => this.#finish());
    return child;
  }

  #helperEvents(): HelperChildEvents {
    return {
      onData: (stream, chunk) => {
        if (this.#outputPaused) this.#held.push({ stream, chunk });
        else this.#deliver(stream, chunk);
      },
      onEnd: (stream) => {
        if (this.#outputPaused) this.#held.push({ stream, chunk: null });
        else this.#endStream();
      },
      onExit: (code, signal) => this.#onLeaderExit({ code, signal }, () => this.#helperChild()?.close()),
      onLost: (reason) => {
        if (this.#done) return;
        // Nobody reads its output or reaps it any more: end what is left of it.
        if (this.#leaderAlive) this.kill('SIGKILL');
        this.#leaderAlive = false;
        this.#spawnError = `${this.#options.command}: lost, ${reason}`;
        this.#finish();
      },
    };
  }

  #helperChild(): HelperChild | undefined {
    const child = this.#child;
    return child === undefined || child instanceof EventEmitter ? undefined : child;
  }

  #deliver(stream: HelperStream, chunk: Buffer): void {
    if (stream === 1) {
      this.#options.onStdout?.(chunk);
      this.#stdout.push(chunk);
    } else {
      this.#options.onStderr?.(chunk);
      this.#stderr.push(chunk);
    }
  }

  #endStream(): void {
    if (--this.#openStreams === 0 && this.#exit !== undefined) this.#finish();
  }

  #onLeaderExit(exit: Exit, abandonOutput: () => void): void {
    this.#exit = exit;
    this.#leaderAlive = false;
    clearTimeout(this.#timer);
    // Input pipes are of no use any more, and 'close' waits for every pipe.
    this.stdin?.destroy();
    this.control?.destroy();
    if (this.#helperChild() !== undefined && this.#openStreams === 0) {
      this.#finish();
      return;
    }
    // A background grandchild may hold the pipes open; stop waiting for it after a grace period
    // (which does not run while a streaming caller has paused the output).
    const giveUp = () => {
      if (this.#outputPaused) {
        this.#graceTimer = setTimeout(giveUp, PIPE_DRAIN_GRACE_MS);
        this.#graceTimer.unref();
        return;
      }
      abandonOutput();
      this.#finish();
    };
    this.#graceTimer = setTimeout(giveUp, PIPE_DRAIN_GRACE_MS);
    this.#graceTimer.unref();
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#graceTimer);
    this.#held = [];
    const stdout = this.#stdout;
    const stderr = this.#stderr;
    this.#resolve({
      exitCode: exitCodeOf(this.#exit, this.#spawnError, this.#timedOut),
      signal: this.#exit?.signal ?? null,
      stdout: stdout.text(),
      stderr: stderr.text(),
      stdoutTruncated: stdout.truncated,
      stderrTruncated: stderr.truncated,
      timedOut: this.#timedOut,
      spawnError: this.#spawnError,
      durationMs: performance.now() - this.#started,
      pid: this.pid,
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
    const wasPaused = this.#outputPaused;
    this.#outputPaused = true;
    const child = this.#child;
    if (child instanceof EventEmitter) {
      for (const s of [child.stdout, child.stderr]) s?.pause();
    } else if (!wasPaused && !this.#done) child?.pause();
  }

  /** Reads the child's output again after {@link pauseOutput}. */
  resumeOutput(): void {
    const wasPaused = this.#outputPaused;
    this.#outputPaused = false;
    const child = this.#child;
    if (child instanceof EventEmitter) {
      for (const s of [child.stdout, child.stderr]) s?.resume();
      return;
    }
    if (!wasPaused) return;
    // What arrived meanwhile first, in order; a consumer may pause again while it is delivered.
    while (!this.#outputPaused && this.#held.length > 0) {
      const { stream, chunk } = this.#held.shift()!;
      if (chunk === null) this.#endStream();
      else this.#deliver(stream, chunk);
    }
    if (!this.#outputPaused && !this.#done) child?.resume();
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
        process.kill(this.pid, signal);
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
  readonly #helper: ExecHelper | undefined;

  /** `execHelper` starts the children it can (see {@link ManagedProcess}); without it, every child is forked. */
  constructor(options: { execHelper?: ExecHelper | undefined } = {}) {
    this.#helper = options.execHelper;
  }

  /** Starts a process and tracks it until it finishes. */
  start(options: SpawnOptions): ManagedProcess {
    const proc = new ManagedProcess(options, this.#helper);
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
