import { rfc3339, ServiceError } from '@warren/protocol';
import type { RawData, WebSocket } from 'ws';

/** How long a stream waits for the client's first frame. */
export const FIRST_FRAME_TIMEOUT_MS = 30_000;

/** The text of a received frame. */
export function frameText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

/** Parses a frame as JSON; undefined when it is not JSON (blank frames included). */
export function parseFrame(data: RawData): unknown {
  const text = frameText(data).trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The first JSON frame the client sends (blank and non-JSON frames are
 * skipped, as the SDKs skip them).
 * @throws {Error} when the socket closes or nothing arrives within `timeoutMs`.
 */
export function firstFrame(ws: WebSocket, timeoutMs = FIRST_FRAME_TIMEOUT_MS): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      ws.off('close', onClose);
    };
    const onMessage = (data: RawData) => {
      const value = parseFrame(data);
      if (value === undefined) return;
      done();
      resolve(value);
    };
    const onClose = () => {
      done();
      reject(new Error('closed before the first frame'));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no request frame within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    ws.on('message', onMessage);
    ws.once('close', onClose);
  });
}

/** An `error` frame (PROTOCOL §11.2) for a failure. */
export function errorFrame(err: unknown, fallbackCode = 'INTERNAL_ERROR'): Record<string, unknown> {
  if (err instanceof ServiceError) return { type: 'error', error: err.message, code: err.code, timestamp: rfc3339() };
  const message = err instanceof Error ? err.message : String(err);
  return { type: 'error', error: message, code: fallbackCode, timestamp: rfc3339() };
}
