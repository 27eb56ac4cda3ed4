import { rfc3339 } from '@warren/protocol';
import { WebSocket } from 'ws';

/** Options of {@link PacedSender}. */
export interface PacedSenderOptions {
  /**
   * Least time between two frames. The TS SDK drops every frame but the first
   * of those arriving in one TCP read (PROTOCOL §11.1). @default 15
   */
  intervalMs?: number;
  /** Queued bytes (ours plus the socket's buffer) above which the producer is asked to pause. @default 1 MiB */
  highWaterBytes?: number;
  /** Largest data frame made by merging queued chunks. @default 64 KiB */
  maxFrameBytes?: number;
  /** Called with `true` when the producer should pause, `false` when it may go on. */
  onPressure?: (paused: boolean) => void;
}

interface Pending {
  frame: Record<string, unknown>;
  /** Key of the string field later chunks of the same type are appended to. */
  mergeKey: string | undefined;
  bytes: number;
}

/**
 * A per-socket send queue: one JSON text frame at a time, at least
 * `intervalMs` apart. Consecutive data chunks of the same type are merged into
 * one frame (up to `maxFrameBytes`), and a producer that outruns the socket is
 * paused through `onPressure`, so a flood never grows memory without bound.
 */
export class PacedSender {
  readonly #ws: WebSocket;
  readonly #intervalMs: number;
  readonly #highWater: number;
  readonly #maxFrame: number;
  readonly #onPressure: (paused: boolean) => void;
  readonly #queue: Pending[] = [];
  #queuedBytes = 0;
  #lastSentAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #paused = false;
  #idleWaiters: Array<() => void> = [];

  constructor(ws: WebSocket, options: PacedSenderOptions = {}) {
    this.#ws = ws;
    this.#intervalMs = options.intervalMs ?? 15;
    this.#highWater = options.highWaterBytes ?? 1024 * 1024;
    this.#maxFrame = options.maxFrameBytes ?? 64 * 1024;
    this.#onPressure = options.onPressure ?? (() => undefined);
    ws.once('close', () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#queue.length = 0;
      this.#queuedBytes = 0;
      this.#resolveIdle();
    });
  }

  /** Bytes waiting in the queue. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Queues a frame as is. */
  send(frame: Record<string, unknown>): void {
    this.#push({ frame, mergeKey: undefined, bytes: JSON.stringify(frame).length });
  }

  /**
   * Queues `{type, [key]: data, timestamp}`, merged into the previous queued
   * frame when it has the same type and room.
   */
  sendData(type: string, data: string, key = 'data'): void {
    if (data === '') return;
    const last = this.#queue[this.#queue.length - 1];
    if (last && last.mergeKey === key && last.frame.type === type && last.bytes + data.length <= this.#maxFrame) {
      last.frame[key] = `${last.frame[key] as string}${data}`;
      last.bytes += data.length;
      this.#queuedBytes += data.length;
      this.#checkPressure();
      return;
    }
    this.#push({ frame: { type, [key]: data, timestamp: rfc3339() }, mergeKey: key, bytes: data.length });
  }

  /** Resolves once every queued frame has been handed to the socket (or the socket closed). */
  drained(): Promise<void> {
    if (this.#queue.length === 0 || this.#ws.readyState !== WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Sends what is queued, then closes the socket. */
  /**
   * Sends the stream's last frame, then waits for the client to close. A
   * client that has not closed after `repeatAfterMs` may have lost the frame
   * (the TS SDK drops a frame that arrives in the same TCP read as the one
   * before it, e.g. when its event loop was busy), so the frame is sent again,
   * up to `repeats` times, alone on the wire; then the socket is closed.
   */
  async finish(
    frame: Record<string, unknown>,
    options: { code?: number; reason?: string; repeatAfterMs?: number; repeats?: number } = {},
  ): Promise<void> {
    const repeatAfterMs = options.repeatAfterMs ?? 250;
    this.send(frame);
    await this.drained();
    for (let i = 0; i < (options.repeats ?? 2); i++) {
      if (!(await this.#closedWithin(repeatAfterMs))) this.send(frame);
      await this.drained();
    }
    await this.close(options.code, options.reason);
  }

  /** Resolves `true` once the socket closed, `false` after `ms` if it is still open. */
  #closedWithin(ms: number): Promise<boolean> {
    if (this.#ws.readyState !== WebSocket.OPEN) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onClose = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#ws.off('close', onClose);
        resolve(this.#ws.readyState !== WebSocket.OPEN);
      }, ms);
      this.#ws.once('close', onClose);
    });
  }

  async close(code = 1000, reason = ''): Promise<void> {
    await this.drained();
    if (this.#ws.readyState === WebSocket.OPEN) {
      // Let the last frame go out on its own before the close frame.
      await new Promise((resolve) => setTimeout(resolve, this.#intervalMs));
      this.#ws.close(code, reason);
    }
  }

  #push(item: Pending): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#queue.push(item);
    this.#queuedBytes += item.bytes;
    this.#checkPressure();
    this.#schedule();
  }

  #schedule(): void {
    // While paused, keep polling: the socket buffer may drain with nothing left in the queue.
    if (this.#timer !== undefined || (this.#queue.length === 0 && !this.#paused)) return;
    const wait = Math.max(0, this.#lastSentAt + this.#intervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushOne();
    }, wait);
  }

  #flushOne(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    // Timers may fire a little early: never send before the interval has really passed.
    if (this.#queue.length > 0 && performance.now() - this.#lastSentAt < this.#intervalMs) {
      this.#schedule();
      return;
    }
    if (this.#ws.bufferedAmount > this.#highWater) {
      // The peer reads slowly: wait for the socket buffer to drain first.
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#flushOne();
      }, this.#intervalMs);
      return;
    }
    const item = this.#queue.shift();
    if (item) {
      this.#queuedBytes -= item.bytes;
      this.#ws.send(JSON.stringify(item.frame));
      this.#lastSentAt = performance.now();
    }
    this.#checkPressure();
    if (this.#queue.length === 0) this.#resolveIdle();
    this.#schedule();
  }

  #checkPressure(): void {
    const load = this.#queuedBytes + this.#ws.bufferedAmount;
    if (!this.#paused && load > this.#highWater) {
      this.#paused = true;
      this.#onPressure(true);
    } else if (this.#paused && load <= this.#highWater / 2) {
      this.#paused = false;
      this.#onPressure(false);
    }
  }

  #resolveIdle(): void {
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
