import { APIConnectionError, type CommandResult, StreamError } from '../errors.ts';
import type { Frame, FrameStream } from './ws.ts';

/** A chunk of output from a running command or code stream. */
export interface OutputEvent {
  /** Which stream the chunk came from. */
  type: 'stdout' | 'stderr';
  /** The text. */
  data: string;
  /** When the agent sent it. */
  timestamp: Date;
}

/** How a streamed run ended: the fields of a command's result. */
export type RunOutcome = CommandResult;

/** Callbacks a streamed run calls for each chunk. */
export interface OutputCallbacks {
  onStdout?: ((data: string) => void) | undefined;
  onStderr?: ((data: string) => void) | undefined;
}

/** Exit code reported for a run the caller killed (128 + SIGKILL, as a shell reports it). */
export const KILLED_EXIT_CODE = 137;

/**
 * Reads the frames of `/execute/stream` or `/commands/stream` (PROTOCOL §11.2):
 * iterate it for output as it arrives, or `wait()` for the outcome. Leaving the
 * iteration early closes the socket, which ends the run in the sandbox.
 */
export class RunStream implements AsyncIterable<OutputEvent> {
  readonly #frames: FrameStream;
  readonly #callbacks: OutputCallbacks;
  #stdout = '';
  #stderr = '';
  #result: Frame | undefined;
  #errorFrame: Frame | undefined;
  #complete = false;
  #killed = false;
  #iterating = false;
  #outcome: Promise<RunOutcome> | undefined;
  #settle: ((o: Promise<RunOutcome>) => void) | undefined;
  readonly #finished: Promise<RunOutcome>;

  constructor(frames: FrameStream, callbacks: OutputCallbacks = {}) {
    this.#frames = frames;
    this.#callbacks = callbacks;
    this.#finished = new Promise<RunOutcome>((resolve) => {
      this.#settle = (o) => resolve(o);
    });
    this.#finished.catch(() => undefined);
  }

  /** Writes to the command's stdin (`stdin` frame). */
  sendStdin(data: string): Promise<void> {
    return this.#frames.send({ type: 'stdin', data });
  }

  /** Closes the command's stdin (`stdin_close` frame). */
  closeStdin(): Promise<void> {
    return this.#frames.send({ type: 'stdin_close' });
  }

  /** Reads one frame; returns the output event it carried, `null` for other frames, `undefined` at the end. */
  async #pull(): Promise<OutputEvent | null | undefined> {
    const frame = await this.#frames.next();
    if (frame === undefined) return undefined;
    const type = frame.type;
    if ((type === 'stdout' || type === 'stderr') && typeof frame.data === 'string') {
      const ts = typeof frame.timestamp === 'string' ? new Date(frame.timestamp) : new Date();
      if (type === 'stdout') {
        this.#stdout += frame.data;
        this.#callbacks.onStdout?.(frame.data);
      } else {
        this.#stderr += frame.data;
        this.#callbacks.onStderr?.(frame.data);
      }
      return { type, data: frame.data, timestamp: ts };
    }
    if (type === 'result') this.#result = frame;
    else if (type === 'error') this.#errorFrame = frame;
    else if (type === 'complete') {
      this.#complete = true;
      this.#frames.close();
    }
    return null;
  }

  #conclude(): RunOutcome {
    const r = this.#result;
    const errorText = typeof this.#errorFrame?.error === 'string' ? this.#errorFrame.error : undefined;
    if (r === undefined) {
      if (this.#killed) {
        return {
          exitCode: KILLED_EXIT_CODE,
          stdout: this.#stdout,
          stderr: this.#stderr,
          timedOut: false,
          killed: true,
          durationMs: 0,
          error: undefined,
        };
      }
      if (this.#errorFrame) {
        throw new StreamError(errorText ?? 'The run failed', this.#errorFrame.code as string | undefined);
      }
      throw new APIConnectionError('The stream ended before the run finished');
    }
    return {
      exitCode: typeof r.exit_code === 'number' ? r.exit_code : -1,
      stdout: this.#stdout,
      stderr: this.#stderr,
      timedOut: r.timed_out === true,
      killed: false,
      durationMs: Math.round((typeof r.execution_time === 'number' ? r.execution_time : 0) * 1000),
      error: errorText,
    };
  }

  async #drain(): Promise<RunOutcome> {
    for (;;) {
      const ev = await this.#pull();
      if (ev === undefined) return this.#conclude();
    }
  }

  /** Waits for the run to end and returns its outcome (output collected from every frame). */
  wait(): Promise<RunOutcome> {
    if (this.#outcome) return this.#outcome;
    if (this.#iterating) return this.#finished;
    this.#outcome = this.#drain();
    this.#settle?.(this.#outcome);
    return this.#outcome;
  }

  /** Ends the run: closes the socket, and the agent kills the process group. */
  kill(): void {
    if (this.#complete || this.#frames.done) return;
    this.#killed = true;
    this.#frames.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputEvent> {
    if (this.#iterating || this.#outcome) throw new Error('A run can be iterated once, and not after wait()');
    this.#iterating = true;
    let ended = false;
    try {
      for (;;) {
        const ev = await this.#pull();
        if (ev === undefined) {
          ended = true;
          break;
        }
        if (ev !== null) yield ev;
      }
    } catch (err) {
      ended = true;
      this.#outcome = Promise.reject(err);
      this.#outcome.catch(() => undefined);
      this.#settle?.(this.#outcome);
      throw err;
    } finally {
      if (!ended) this.kill();
      if (!this.#outcome) {
        const concluded = Promise.resolve().then(() => this.#conclude());
        concluded.catch(() => undefined);
        this.#outcome = concluded;
        this.#settle?.(concluded);
      }
    }
  }
}
