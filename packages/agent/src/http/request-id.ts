import { randomBytes } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { type AppEnv, nodeResponse, requestHeader, setAnswerHeader } from './app-env.ts';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Random bytes of the next request ids, drawn 128 ids at a time (one CSPRNG call instead of one per request). */
let idBytes = Buffer.alloc(0);
let idOffset = 0;

/** A fresh request id: `req_` and 16 random hex digits. */
export function newRequestId(): string {
  if (idOffset + 8 > idBytes.length) {
    idBytes = randomBytes(8 * 128);
    idOffset = 0;
  }
  const id = `req_${idBytes.toString('hex', idOffset, idOffset + 8)}`;
  idOffset += 8;
  return id;
}

/**
 * Gives every request an id (the caller's `X-Request-ID` when it is a safe
 * token, so the gateway's id carries through) and echoes it on the response.
 * On Node's server the header goes on Node's response, which every answer is
 * written through, so Hono never builds a web `Headers` for it.
 */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const given = requestHeader(c, 'x-request-id');
    const id = given !== undefined && SAFE_ID.test(given) ? given : newRequestId();
    c.set('requestId', id);
    setAnswerHeader(c, 'X-Request-ID', id);
    await next();
    // In-process, a route's own Response replaces the one c.header wrote on.
    if (nodeResponse(c) === undefined) c.res.headers.set('X-Request-ID', id);
  };
}
