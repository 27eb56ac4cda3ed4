import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { type EnvMap, type ExecuteResponse, type JupyterSession, rfc3339 } from '@warren/protocol';
import { buildChildEnv } from './child-env.ts';
import { findExecutable } from './executable.ts';
import { LineSplitter } from './line-splitter.ts';
import type { ManagedProcess, ProcessManager } from './process-manager.ts';
import { TIMEOUT_EXIT_CODE } from './process-manager.ts';
import { appendLine, noRichOutput, type RunContext, type RunDeps, secondsOf } from './run-context.ts';

/** How long a kernel may take to start before the start counts as failed. */
const KERNEL_START_TIMEOUT_MS = 90_000;
/** After a timeout, how long the interrupt (SIGINT) gets to stop the run. */
const INTERRUPT_GRACE_MS = 3000;
/** After killing a kernel that ignored the interrupt, how long the bridge gets to report it. */
const KILL_GRACE_MS = 5000;
/** Consecutive failed kernel starts after which python runs as plain processes for good. */
const MAX_START_FAILURES = 3;
/** Largest line the bridge may send: a result with capped output and rich displays. */
const MAX_BRIDGE_LINE_BYTES = 256 * 1024 * 1024;
/** Bridge stderr lines logged per bridge process; the rest are dropped. */
const MAX_LOGGED_BRIDGE_LINES = 100;

/** Lifecycle of the kernel as `/jupyter/sessions` reports it. */
export type KernelState = 'stopped' | 'starting' | 'idle' | 'busy' | 'restarting' | 'dead' | 'unavailable';

/** A display output (display_data or execute_result) of a kernel run. */
interface BridgeDisplay {
  kind: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

/** The bridge's answer to one execute request (see kernel_bridge.py). */
interface BridgeResult {
  event: 'result';
  id: number;
  status: 'ok' | 'error' | 'aborted' | 'dead';
  stdout?: string;
  stderr?: string;
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
  result?: string | null;
  displays?: BridgeDisplay[];
  displays_dropped?: number;
  error?: { ename: string; evalue: string; traceback: string[] } | null;
  execution_count?: number | null;
  reason?: string;
}

type BridgeEvent =
  | { event: 'hello'; ipykernel: string; jupyter_client: string; python: string }
  | { event: 'unavailable'; reason: string }
  | { event: 'ready'; kernel_id: string; pid: number | null; restarted: boolean }
  | { event: 'failed'; reason: string }
  | BridgeResult;

/** How a kernel start ended: running, no ipykernel in the template, or it failed. */
export type KernelStartOutcome = 'ready' | 'unavailable' | 'failed';

/** Options of one {@link KernelService.execute} call. */
export interface KernelRunOptions {
  /**
   * The agent's own warm-up of its execute path: the kernel does not store the
   * run in its history, and the execution count and last activity stay as they were.
   * @default false
   */
  warmUp?: boolean;
}

/** Options of {@link KernelService}. */
export interface KernelServiceOptions extends RunDeps {
  processes: ProcessManager;
  /** Path of kernel_bridge.py. */
  bridgePath: string;
  log: (line: string) => void;
}

/** Mime types in the order a display's `rich_outputs` type is chosen. */
const MIME_PRIORITY = [
  'image/png',
  'image/svg+xml',
  'image/jpeg',
  'text/html',
  'application/json',
  'text/markdown',
  'text/latex',
  'text/plain',
];

/**
 * The sandbox's one IPython kernel, driven through kernel_bridge.py (a
 * jupyter_client KernelManager speaking JSON lines). Started lazily, or
 * eagerly with {@link warmUp}; runs are serialised; a run that times out is
 * interrupted, and the kernel is killed and restarted when the interrupt
 * does not land. When ipykernel or jupyter_client is missing, `execute`
 * answers `undefined` and callers run python as a plain process.
 */
export class KernelService {
  readonly #options: KernelServiceOptions;
  #bridge: ManagedProcess | undefined;
  #state: KernelState = 'stopped';
  #available: boolean | undefined;
  #startFailures = 0;
  #starting: Promise<KernelStartOutcome> | undefined;
  readonly #startWaiters: Array<(outcome: KernelStartOutcome) => void> = [];
  #kernelId: string = randomUUID();
  #kernelPid: number | undefined;
  #executionCount = 0;
  #lastActivity = new Date();
  #nextRequestId = 1;
  readonly #pending = new Map<number, (result: BridgeResult) => void>();
  #tail: Promise<void> = Promise.resolve();
  #versions: Record<string, string> = {};
  #closed = false;
  /** While the work given to {@link warmUp} runs, the kernel reports itself as still starting. */
  #warmingUp = false;
  #warmed: () => void = () => undefined;
  readonly #warm = new Promise<void>((resolve) => {
    this.#warmed = resolve;
  });

  constructor(options: KernelServiceOptions) {
    this.#options = options;
  }

  /** `true` once the bridge found ipykernel, `false` when it did not, `undefined` until known (and during warm-up). */
  get available(): boolean | undefined {
    return this.#warmingUp ? undefined : this.#available;
  }

  /** Current state of the kernel; `starting` until the warm-up is done. */
  get state(): KernelState {
    return this.#warmingUp ? 'starting' : this.#state;
  }

  /** Versions the bridge reported (ipykernel, jupyter_client, python). */
  get versions(): Readonly<Record<string, string>> {
    return this.#versions;
  }

  /**
   * Starts the kernel in the background so the first run finds it warm, then
   * runs `afterStart` (whatever the start's outcome); until that settles the
   * kernel reports `starting` and its availability as unknown, so whoever waits
   * for an idle kernel also waits for it.
   */
  warmUp(afterStart?: (outcome: KernelStartOutcome) => Promise<void>): void {
    if (afterStart !== undefined) this.#warmingUp = true;
    void this.#ensureStarted()
      .then((outcome) => afterStart?.(outcome))
      .catch((err: unknown) => this.#options.log(`agent: warm-up failed: ${String(err)}`))
      .finally(() => {
        this.#warmingUp = false;
        this.#warmed();
      });
  }

  /** Resolves once the start {@link warmUp} began has settled, whatever its outcome; never without a warm-up. */
  whenWarm(): Promise<void> {
    return this.#warm;
  }

  /** The kernel as `/jupyter/sessions` lists it; empty when there is none. */
  sessions(): JupyterSession[] {
    if (this.#available === false || this.#state === 'stopped' || this.#state === 'unavailable') return [];
    const state = this.state;
    return [
      {
        kernel_id: this.#kernelId,
        kernel_name: 'python3',
        execution_state: state as JupyterSession['execution_state'],
        connections: this.#bridge ? 1 : 0,
        last_activity: rfc3339(this.#lastActivity),
        execution_count: this.#executionCount,
        pid: this.#kernelPid ?? null,
      },
    ];
  }

  /**
   * Runs python code in the kernel. A failing run or a timeout is a normal
   * result. Answers `undefined` when no kernel can run it (ipykernel missing,
   * or the kernel keeps failing to start): the caller then runs a process.
   */
  async execute(
    code: string,
    ctx: RunContext,
    overlay: EnvMap,
    timeoutMs: number,
    signal?: AbortSignal,
    options: KernelRunOptions = {},
  ): Promise<ExecuteResponse | undefined> {
    const started = performance.now();
    const deadline = Date.now() + timeoutMs;
    const release = await this.#lock(deadline);
    if (release !== undefined && signal?.aborted) {
      release();
      return timeoutResponse(started, timeoutMs, 'the client went away before the run started');
    }
    if (release === undefined) {
      return timeoutResponse(started, timeoutMs, 'the Python kernel was busy with another execution');
    }
    try {
      const outcome = await this.#ensureStarted();
      if (outcome !== 'ready') return undefined;
      return await this.#run(
        code,
        ctx,
        overlay,
        { deadline, timeoutMs, started, warmUp: options.warmUp === true },
        signal,
      );
    } finally {
      release();
    }
  }

  /** Stops the bridge and its kernel. */
  close(): void {
    this.#closed = true;
    this.#killKernel('SIGKILL');
    this.#bridge?.killGroup('SIGKILL');
  }

  async #run(
    code: string,
    ctx: RunContext,
    overlay: EnvMap,
    run: { deadline: number; timeoutMs: number; started: number; warmUp: boolean },
    signal?: AbortSignal,
  ): Promise<ExecuteResponse> {
    const { deadline, timeoutMs, started } = run;
    const bridge = this.#bridge;
    if (!bridge?.stdin || !bridge.running) return deadResponse(started, 'the Python kernel is not running');
    const id = this.#nextRequestId++;
    const answer = new Promise<BridgeResult>((resolve) => this.#pending.set(id, resolve));
    const { maxOutputBytes } = this.#options.config;
    bridge.stdin.write(
      `${JSON.stringify({
        op: 'execute',
        id,
        code,
        env: overlay,
        cwd: ctx.cwd,
        max_output_bytes: maxOutputBytes,
        max_rich_bytes: maxOutputBytes * 4,
        ...(run.warmUp ? { warm_up: true } : {}),
      })}\n`,
    );
    this.#state = 'busy';
    let timedOut = false;
    let restarted = false;
    // The deadline, or the client going away (then the run is interrupted the same way, and nobody reads the answer).
    const aborted = new Promise<undefined>((resolve) => {
      if (signal?.aborted) resolve(undefined);
      signal?.addEventListener('abort', () => resolve(undefined), { once: true });
    });
    let result = await Promise.race([withTimeout(answer, deadline - Date.now()), aborted]);
    if (result === undefined) {
      timedOut = true;
      this.#killKernel('SIGINT');
      result = await withTimeout(answer, INTERRUPT_GRACE_MS);
      if (result === undefined) {
        restarted = true;
        this.#state = 'restarting';
        this.#options.log('agent: the Python kernel ignored an interrupt; killing it');
        this.#killKernel('SIGKILL');
        result = await withTimeout(answer, KILL_GRACE_MS);
        if (result === undefined) {
          this.#options.log('agent: the kernel bridge does not answer; restarting it');
          bridge.killGroup('SIGKILL');
          result = { event: 'result', id, status: 'dead', reason: 'the kernel bridge stopped answering' };
        }
      }
    }
    this.#pending.delete(id);
    if (this.#state === 'busy') this.#state = 'idle';
    if (!run.warmUp) {
      this.#lastActivity = new Date();
      if (typeof result.execution_count === 'number') this.#executionCount = result.execution_count;
    }
    return toResponse(result, { started, timedOut, timeoutMs, restarted });
  }

  /** Waits for the previous run to finish; undefined when `deadline` passes first. */
  async #lock(deadline: number): Promise<(() => void) | undefined> {
    let release: () => void = () => undefined;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => mine);
    const turn = await withTimeout(
      previous.then(() => true),
      deadline - Date.now(),
    );
    if (turn === undefined) {
      release();
      return undefined;
    }
    return release;
  }

  #killKernel(signal: NodeJS.Signals): void {
    if (this.#kernelPid === undefined) return;
    try {
      process.kill(-this.#kernelPid, signal);
    } catch {
      try {
        process.kill(this.#kernelPid, signal);
      } catch {
        // already gone
      }
    }
  }

  #ensureStarted(): Promise<KernelStartOutcome> {
    if (this.#closed || this.#available === false) return Promise.resolve('unavailable');
    if (this.#starting) return this.#starting;
    if (this.#bridge) {
      if (this.#state === 'idle' || this.#state === 'busy') return Promise.resolve('ready');
      // The bridge is restarting a kernel that died: wait for it.
      return withTimeout(this.#nextStart(), KERNEL_START_TIMEOUT_MS).then((o) => o ?? 'failed');
    }
    if (this.#startFailures >= MAX_START_FAILURES) return Promise.resolve('failed');
    this.#starting = this.#startBridge().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #startBridge(): Promise<KernelStartOutcome> {
    const { config, processes, log } = this.#options;
    const env = buildChildEnv({ template: config.templateEnv, global: {} });
    const python = (await findExecutable('python3', env.PATH)) ?? (await findExecutable('python', env.PATH));
    if (python === undefined) {
      this.#available = false;
      this.#state = 'unavailable';
      return 'unavailable';
    }
    await mkdir(config.workdir, { recursive: true }).catch(() => undefined);
    this.#state = 'starting';
    let logged = 0;
    const splitter = new LineSplitter({
      maxLineBytes: MAX_BRIDGE_LINE_BYTES,
      onLine: (line) => this.#onBridgeLine(line),
      onOverflow: () => {
        log('agent: the kernel bridge sent an oversized line; restarting it');
        bridge.killGroup('SIGKILL');
      },
    });
    const stderr = new LineSplitter({
      maxLineBytes: 64 * 1024,
      onLine: (line) => {
        if (logged++ < MAX_LOGGED_BRIDGE_LINES && line.trim() !== '') log(`kernel-bridge: ${line.slice(0, 500)}`);
      },
    });
    const outcome = this.#nextStart();
    const bridge = processes.start({
      command: python,
      args: [this.#options.bridgePath],
      cwd: config.workdir,
      env,
      timeoutMs: 0,
      maxOutputBytes: 0,
      stdin: 'pipe',
      onStdout: (chunk) => splitter.push(chunk),
      onStderr: (chunk) => stderr.push(chunk),
    });
    this.#bridge = bridge;
    void bridge.wait().then((result) => this.#onBridgeExit(bridge, result.exitCode, result.spawnError));
    const timer = setTimeout(() => this.#settleStart('failed'), KERNEL_START_TIMEOUT_MS);
    const settled = await outcome;
    clearTimeout(timer);
    if (settled === 'failed') {
      this.#startFailures++;
      bridge.killGroup('SIGKILL');
    } else if (settled === 'ready') {
      this.#startFailures = 0;
    }
    return settled;
  }

  #nextStart(): Promise<KernelStartOutcome> {
    return new Promise<KernelStartOutcome>((resolve) => this.#startWaiters.push(resolve));
  }

  #settleStart(outcome: KernelStartOutcome): void {
    for (const resolve of this.#startWaiters.splice(0)) resolve(outcome);
  }

  #onBridgeLine(line: string): void {
    let event: BridgeEvent;
    try {
      event = JSON.parse(line) as BridgeEvent;
    } catch {
      this.#options.log(`agent: unreadable line from the kernel bridge: ${line.slice(0, 200)}`);
      return;
    }
    switch (event.event) {
      case 'hello':
        this.#available = true;
        this.#versions = { ipykernel: event.ipykernel, jupyter_client: event.jupyter_client, python: event.python };
        return;
      case 'unavailable':
        this.#available = false;
        this.#state = 'unavailable';
        this.#options.log(`agent: no Jupyter kernel in this sandbox (${event.reason}); python runs as processes`);
        this.#settleStart('unavailable');
        return;
      case 'ready':
        this.#kernelId = event.kernel_id;
        this.#kernelPid = event.pid ?? undefined;
        if (event.restarted) this.#executionCount = 0;
        this.#state = this.#pending.size > 0 ? 'busy' : 'idle';
        this.#lastActivity = new Date();
        this.#settleStart('ready');
        return;
      case 'failed':
        this.#options.log(`agent: ${event.reason}`);
        this.#state = 'dead';
        this.#settleStart('failed');
        return;
      case 'result': {
        if (event.status === 'dead') this.#state = 'restarting';
        const resolve = this.#pending.get(event.id);
        this.#pending.delete(event.id);
        resolve?.(event);
        return;
      }
    }
  }

  #onBridgeExit(bridge: ManagedProcess, exitCode: number, spawnError: string | undefined): void {
    if (this.#bridge !== bridge) return;
    this.#bridge = undefined;
    this.#kernelPid = undefined;
    for (const [id, resolve] of this.#pending) {
      resolve({ event: 'result', id, status: 'dead', reason: 'the kernel bridge exited' });
    }
    this.#pending.clear();
    if (this.#state !== 'unavailable') {
      this.#state = 'dead';
      if (!this.#closed) {
        this.#options.log(`agent: kernel bridge exited (${spawnError ?? `code ${exitCode}`})`);
      }
    }
    this.#settleStart(this.#available === false ? 'unavailable' : 'failed');
  }
}

/** Resolves with the promise's value, or undefined after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return Promise.race([promise, Promise.resolve(undefined)]);
  return new Promise<T | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    void promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

function emptyResponse(started: number): ExecuteResponse {
  return {
    success: false,
    stdout: '',
    stderr: '',
    exit_code: 1,
    execution_time: secondsOf(performance.now() - started),
    timestamp: rfc3339(),
    language: 'python',
    ...noRichOutput(),
    stdout_truncated: false,
    stderr_truncated: false,
    timed_out: false,
  };
}

function timeoutNotice(timeoutMs: number): string {
  return `Execution timed out after ${timeoutMs / 1000}s`;
}

function timeoutResponse(started: number, timeoutMs: number, why: string): ExecuteResponse {
  const notice = `${timeoutNotice(timeoutMs)}: ${why}`;
  return {
    ...emptyResponse(started),
    exit_code: TIMEOUT_EXIT_CODE,
    stderr: `${notice}\n`,
    timed_out: true,
    error: notice,
  };
}

function deadResponse(started: number, why: string): ExecuteResponse {
  return { ...emptyResponse(started), exit_code: 137, stderr: `${why}\n`, error: why };
}

/** Exit status a plain `python3` process would have had for a SystemExit value. */
function systemExitCode(evalue: string): number {
  const v = evalue.trim();
  if (v === '' || v === 'None') return 0;
  if (/^-?\d+$/.test(v)) return Number(v) & 0xff;
  return 1;
}

function richOutput(display: BridgeDisplay): Record<string, unknown> {
  const mimes = Object.keys(display.data);
  const type = MIME_PRIORITY.find((m) => mimes.includes(m)) ?? mimes[0] ?? 'text/plain';
  return {
    type,
    format: type.split('/')[1] ?? type,
    data: display.data,
    metadata: display.metadata,
    source: display.kind,
  };
}

/** Turns a bridge result into the `/execute` wire response (PROTOCOL §9). */
function toResponse(
  r: BridgeResult,
  run: { started: number; timedOut: boolean; timeoutMs: number; restarted: boolean },
): ExecuteResponse {
  const displays = r.displays ?? [];
  const first = (mime: string): unknown => displays.find((d) => mime in d.data)?.data[mime];
  const asString = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const json = first('application/json');

  let exitCode = 0;
  let stderr = r.stderr ?? '';
  let error: string | undefined;
  if (r.status === 'error' && r.error) {
    if (r.error.ename === 'SystemExit') {
      exitCode = systemExitCode(r.error.evalue);
      if (exitCode === 1) stderr = appendLine(stderr, r.error.evalue);
    } else {
      exitCode = 1;
      stderr = appendLine(stderr, r.error.traceback.join('\n').replace(/\n+$/, ''));
      error = `${r.error.ename}: ${r.error.evalue}`;
    }
  } else if (r.status === 'aborted') {
    exitCode = 1;
    error = 'Execution aborted by the kernel';
    stderr = appendLine(stderr, error);
  } else if (r.status === 'dead') {
    exitCode = 137;
    error = `The Python kernel died (${r.reason ?? 'unknown reason'}); it was restarted and its state was lost`;
    stderr = appendLine(stderr, error);
  }
  if (run.timedOut) {
    exitCode = TIMEOUT_EXIT_CODE;
    // The KeyboardInterrupt traceback of the interrupt is noise: replace it with the notice.
    stderr = r.status === 'error' && r.error?.ename === 'KeyboardInterrupt' ? (r.stderr ?? '') : stderr;
    const notice = run.restarted
      ? `${timeoutNotice(run.timeoutMs)}; the Python kernel did not stop on interrupt and was restarted (its state was lost)`
      : timeoutNotice(run.timeoutMs);
    stderr = appendLine(stderr, notice);
    error = notice;
  }
  return {
    success: exitCode === 0,
    stdout: r.stdout ?? '',
    stderr,
    exit_code: exitCode,
    execution_time: secondsOf(performance.now() - run.started),
    timestamp: rfc3339(),
    language: 'python',
    png: asString(first('image/png')),
    html: asString(first('text/html')),
    json: json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : null,
    svg: asString(first('image/svg+xml')),
    markdown: asString(first('text/markdown')),
    result: r.result ?? null,
    rich_outputs: displays.map(richOutput),
    stdout_truncated: r.stdout_truncated ?? false,
    stderr_truncated: r.stderr_truncated ?? false,
    timed_out: run.timedOut,
    ...(r.execution_count == null ? {} : { execution_count: r.execution_count }),
    ...((r.displays_dropped ?? 0) > 0 ? { rich_outputs_dropped: r.displays_dropped } : {}),
    ...(error === undefined ? {} : { error }),
  };
}
