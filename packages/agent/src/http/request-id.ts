import { randomBytes } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './app-env.ts';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A fresh request id. */
export function newRequestId(): string {
  return `req_${randomBytes(8).toString('hex')}`;
}

/**
 * Gives every request an id (the caller's `X-Request-ID` when it is a safe
 * token, so the gateway's id carries through) and echoes it on the response.
 */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const given = c.req.header('x-request-id');
    const id = given !== undefined && SAFE_ID.test(given) ? given : newRequestId();
    c.set('requestId', id);
    c.header('X-Request-ID', id);
    await next();
    c.res.headers.set('X-Request-ID', id);
  };
}
