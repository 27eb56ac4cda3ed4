import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { agentErrorBody, type ServiceError } from '@warren/protocol';

/** Hop-by-hop headers a proxy must not forward. */
export const HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
]);

/** A request id: `req_` + 16 hex digits (the same shape the control app uses). */
function requestId(): string {
  return `req_${randomBytes(8).toString('hex')}`;
}

/** The token in `Authorization: Bearer <token>`, if any. */
export function bearer(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
}

/** The headers of a message without hop-by-hop ones. */
export function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_HEADERS.has(k)) out[k] = v;
  }
  return out;
}

/** Answers with an error envelope (the agent's flat one unless told otherwise). */
export function sendError(
  res: ServerResponse,
  err: ServiceError,
  envelope: (err: ServiceError, requestId: string) => Record<string, unknown> = agentErrorBody,
  extraHeaders: Record<string, string> = {},
): void {
  const id = requestId();
  const body = JSON.stringify(envelope(err, id));
  res.writeHead(err.status, {
    ...extraHeaders,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': id,
  });
  res.end(body);
}

/** Writes an error response on a socket that was not upgraded, and closes it. */
export function rejectUpgrade(socket: Duplex, err: ServiceError): void {
  const body = JSON.stringify(agentErrorBody(err, requestId()));
  socket.end(
    `HTTP/1.1 ${err.status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Most a client may send after its request was already answered, before its connection is cut. */
const MAX_DRAIN_BYTES = 1024 * 1024 * 1024;
const MAX_DRAIN_MS = 60_000;

/**
 * Reads and discards the rest of a request body the server already answered
 * (e.g. with 413), so the client reads the answer instead of a reset
 * connection; bounded in bytes and time.
 */
export function drainRequest(req: IncomingMessage, done: () => void): void {
  if (req.complete) {
    done();
    return;
  }
  let seen = 0;
  const timer = setTimeout(() => req.socket.destroy(), MAX_DRAIN_MS);
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > MAX_DRAIN_BYTES) req.socket.destroy();
  });
  req.once('end', () => {
    clearTimeout(timer);
    done();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

/**
 * Reads a request body up to `maxBytes`. Resolves undefined when it is
 * larger (the rest is drained first, so the caller can answer 413).
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    if (Number(req.headers['content-length'] ?? 0) > maxBytes) {
      drainRequest(req, () => resolve(undefined));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.off('data', onData);
        chunks.length = 0;
        drainRequest(req, () => resolve(undefined));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (size <= maxBytes) resolve(Buffer.concat(chunks));
    });
    req.once('error', () => resolve(undefined));
  });
}
