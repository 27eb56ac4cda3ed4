import { requestOptions } from './client.ts';
import type { AgentLink } from './internal/agent.ts';
import type { RequestOptions } from './internal/http.ts';
import type { FrameStream } from './internal/ws.ts';

/** Terminal size in character cells. */
export interface PtySize {
  cols: number;
  rows: number;
}

/** Options of {@link PtyApi.create}. */
export interface PtyOptions extends RequestOptions, Partial<PtySize> {
  /** Called with terminal output as it arrives; without it, iterate the {@link Pty}. */
  onData?: ((data: string) => void) | undefined;
}

/**
 * An interactive terminal (a login shell on a real PTY). Iterate it for output,
 * or pass `onData`; `wait()` resolves with the shell's exit code.
 */
export class Pty implements AsyncIterable<string> {
  readonly #frames: FrameStream;
  readonly #onData: ((data: string) => void) | undefined;
  #exitCode: number | undefined;
  #iterating = false;
  #pump: Promise<number | undefined> | undefined;
  #endIteration: () => void = () => undefined;
  readonly #iterationEnded = new Promise<void>((resolve) => {
    this.#endIteration = resolve;
  });

  /** @internal */
  constructor(frames: FrameStream, onData: ((data: string) => void) | undefined) {
    this.#frames = frames;
    this.#onData = onData;
    if (onData) this.#pump = this.#drain();
  }

  /** Types into the terminal (include `\n` to submit a line). */
  async sendInput(data: string): Promise<void> {
    await this.#frames.send({ type: 'input', data });
  }

  /** Resizes the terminal. */
  async resize(size: PtySize): Promise<void> {
    await this.#frames.send({ type: 'resize', cols: size.cols, rows: size.rows });
  }

  /** Hangs the terminal up (the shell gets SIGHUP). */
  kill(): void {
    this.#frames.close();
  }

  /** The shell's exit code once it exited; `undefined` if the terminal was closed first. */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** Waits until the shell exits or the terminal is closed; resolves with the exit code, if the shell exited. */
  wait(): Promise<number | undefined> {
    this.#pump ??= this.#iterating ? this.#untilDone() : this.#drain();
    return this.#pump;
  }

  async #untilDone(): Promise<number | undefined> {
    await this.#iterationEnded;
    return this.#exitCode;
  }

  #take(frame: Record<string, unknown>): string | undefined {
    if (frame.type === 'output' && typeof frame.data === 'string') return frame.data;
    if (frame.type === 'exit') this.#exitCode = typeof frame.code === 'number' ? frame.code : -1;
    return undefined;
  }

  async #drain(): Promise<number | undefined> {
    for (;;) {
      const frame = await this.#frames.next();
      if (frame === undefined) return this.#exitCode;
      const data = this.#take(frame);
      if (data !== undefined) this.#onData?.(data);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    if (this.#onData || this.#iterating) throw new Error('This terminal is already being read');
    this.#iterating = true;
    try {
      for (;;) {
        const frame = await this.#frames.next();
        if (frame === undefined) return;
        const data = this.#take(frame);
        if (data !== undefined) yield data;
      }
    } finally {
      if (this.#exitCode === undefined) this.kill();
      this.#endIteration();
    }
  }
}

/** Interactive terminals in the sandbox. */
export class PtyApi {
  readonly #agent: AgentLink;

  /** @internal */
  constructor(agent: AgentLink) {
    this.#agent = agent;
  }

  /**
   * Opens a terminal running a login shell in `/workspace`.
   * @example
   * const pty = await sandbox.pty.create({ cols: 100, rows: 30, onData: (d) => process.stdout.write(d) });
   * await pty.sendInput('echo hi; exit 3\n');
   * await pty.wait(); // 3
   */
  async create(options: PtyOptions = {}): Promise<Pty> {
    const initial =
      options.cols !== undefined && options.rows !== undefined
        ? [{ type: 'resize', cols: options.cols, rows: options.rows }]
        : [];
    const frames = await this.#agent.stream('/terminal', initial, { ...requestOptions(options), endOn: ['exit'] });
    return new Pty(frames, options.onData);
  }
}
