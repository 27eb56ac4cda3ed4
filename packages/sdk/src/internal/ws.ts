import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { APIConnectionError, APIError, APITimeoutError, APIUserAbortError } from '../errors.ts';

/** A JSON frame received on an agent WebSocket. */
export type Frame = Record<string, unknown>;

/** Frames queued for a slow reader above which the socket stops being read. */
const HIGH_WATER_FRAMES = 256;

/** Options of {@link openFrameStream}. */
export interface FrameStreamOptions {
  url: string;
  headers: Record<string, string>;
  /** Frames sent as soon as the socket opens. */
  initial?: Frame[] | undefined;
  signal?: AbortSignal | undefined;
  /** Time the handshake may take. */
  connectTimeoutMs: number;
  /** Frame type after which the stream ends (the socket is then closed by us). */
  endOn?: readonly string[] | undefined;
}

/**
 * A WebSocket of JSON text frames read as an async iterable. Ending the
 * iteration early (`break`) or aborting `signal` closes the socket, which makes
 * the agent end what the socket was running.
 */
export class FrameStream implements AsyncIterable<Frame> {
  readonly #ws: WebSocket;
  readonly #queue: Frame[] = [];
  readonly #waiters: Array<{ resolve: (r: IteratorResult<Frame>) => void; reject: (e: unknown) => void }> = [];
  readonly #endOn: ReadonlySet<string>;
  readonly #opened: Promise<void>;
  #done = false;
  #error: unknown;
  #paused = false;
  #onAbort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  constructor(options: FrameStreamOptions) {
    this.#endOn = new Set(options.endOn ?? []);
    this.#signal = options.signal;
    this.#ws = new WebSocket(options.url, {
      headers: options.headers,
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs,
      maxPayload: 256 * 1024 * 1024,
    });
    const ws = this.#ws;
    this.#opened = new Promise((resolve, reject) => {
      ws.once('open', () => {
        for (const frame of options.initial ?? []) ws.send(JSON.stringify(frame));
        resolve();
      });
      ws.once('unexpected-response', (_req, res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // keep the text
          }
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          const err = APIError.from(res.statusCode ?? 502, body, headers);
          reject(err);
          this.#fail(err);
          ws.terminate();
        });
      });
      ws.once('error', (err) => {
        if (this.#error !== undefined) {
          // Already failed (an abort, or an HTTP answer instead of an upgrade): keep that error.
          reject(this.#error);
          return;
        }
        const wrapped = /timed out/i.test(err.message)
          ? new APITimeoutError(`WebSocket handshake timed out after ${options.connectTimeoutMs} ms`, { cause: err })
          : new APIConnectionError(`WebSocket error: ${err.message}`, { cause: err });
        reject(wrapped);
        this.#fail(wrapped);
      });
    });
    this.#opened.catch(() => undefined);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (text.trim() === '') return;
      let frame: unknown;
      try {
        frame = JSON.parse(text);
      } catch {
        return;
      }
      if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return;
      this.#push(frame as Frame);
      if (this.#endOn.has(String((frame as Frame).type))) this.#finish(true);
    });
    ws.once('close', () => this.#finish(false));
    if (options.signal) {
      if (options.signal.aborted) queueMicrotask(() => this.#abort());
      else {
        this.#onAbort = () => this.#abort();
        options.signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  /** Resolves when the socket is open; rejects when the handshake fails. */
  opened(): Promise<void> {
    return this.#opened;
  }

  /** Sends a JSON frame once the socket is open. */
  async send(frame: Frame): Promise<void> {
    await this.#opened;
    if (this.#ws.readyState !== WebSocket.OPEN) throw new APIConnectionError('The stream is closed');
    await new Promise<void>((resolve, reject) =>
      this.#ws.send(JSON.stringify(frame), (err) => (err ? reject(new APIConnectionError(err.message)) : resolve())),
    );
  }

  /** Closes the socket; the iteration ends. */
  close(): void {
    this.#finish(true);
  }

  /** True once the stream ended (socket closed, end frame, error or abort). */
  get done(): boolean {
    return this.#done;
  }

  #abort(): void {
    this.#fail(new APIUserAbortError('Stream was aborted'));
    this.#ws.terminate();
  }

  #push(frame: Frame): void {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve({ value: frame, done: false });
      return;
    }
    this.#queue.push(frame);
    if (!this.#paused && this.#queue.length >= HIGH_WATER_FRAMES) {
      this.#paused = true;
      this.#ws.pause();
    }
  }

  #fail(err: unknown): void {
    if (this.#done) return;
    this.#error = err;
    this.#finish(true);
  }

  #finish(closeSocket: boolean): void {
    if (this.#onAbort) this.#signal?.removeEventListener('abort', this.#onAbort);
    if (!this.#done) {
      this.#done = true;
      for (const w of this.#waiters.splice(0)) {
        if (this.#error !== undefined) w.reject(this.#error);
        else w.resolve({ value: undefined, done: true });
      }
    }
    if (closeSocket && this.#ws.readyState !== WebSocket.CLOSED) {
      if (this.#ws.readyState === WebSocket.CONNECTING) this.#ws.terminate();
      else this.#ws.close(1000);
      // A peer that never answers the close handshake is cut off.
      setTimeout(() => this.#ws.terminate(), 2000).unref();
    }
  }

  /** The next frame, or `undefined` once the stream ended. @throws the stream's error. */
  async next(): Promise<Frame | undefined> {
    const frame = this.#queue.shift();
    if (frame) {
      if (this.#paused && this.#queue.length < HIGH_WATER_FRAMES / 2) {
        this.#paused = false;
        this.#ws.resume();
      }
      return frame;
    }
    if (this.#done) {
      if (this.#error !== undefined) throw this.#error;
      return undefined;
    }
    const r = await new Promise<IteratorResult<Frame>>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    return r.done ? undefined : r.value;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Frame> {
    try {
      for (;;) {
        const frame = await this.next();
        if (frame === undefined) return;
        yield frame;
      }
    } finally {
      this.close();
    }
  }
}

/** The WebSocket URL of an agent path: the origin of `publicHost` (its path dropped, PROTOCOL §1.1). */
export function wsURL(publicHost: string, path: string): string {
  const url = new URL(publicHost);
  return `${url.protocol === 'https:' ? 'wss:' : 'ws:'}//${url.host}${path}`;
}
