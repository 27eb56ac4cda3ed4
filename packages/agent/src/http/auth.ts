import { ErrorCode, ServiceError, verifySandboxToken } from '@warren/protocol';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './app-env.ts';

/** The key and sandbox a token must match. */
export interface TokenOptions {
  key: Buffer;
  sandboxId: string;
}

/**
 * Checks an `Authorization` header value: `Bearer <token>` signed with this
 * sandbox's key and issued for this sandbox. Answers the error to send, or
 * undefined when the token is good.
 */
export function checkBearer(header: string | undefined, options: TokenOptions): ServiceError | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  if (!match?.[1]) return new ServiceError(ErrorCode.TOKEN_INVALID, 'Missing bearer token');
  const check = verifySandboxToken(options.key, match[1], { sandboxId: options.sandboxId });
  if (check.ok) return undefined;
  if (check.reason === 'expired') return new ServiceError(ErrorCode.TOKEN_EXPIRED, 'Token expired');
  return new ServiceError(ErrorCode.TOKEN_INVALID, 'Invalid token');
}

/**
 * Requires `Authorization: Bearer <token>` signed with this sandbox's key and
 * issued for this sandbox.
 * @throws {ServiceError} `TOKEN_EXPIRED` for an expired token, `TOKEN_INVALID` otherwise.
 */
export function requireToken(options: TokenOptions): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const error = checkBearer(c.req.header('authorization'), options);
    if (error) throw error;
    await next();
  };
}
