import { ErrorCode, ServiceError, TokenVerifier } from '@warren/protocol';
import type { MiddlewareHandler } from 'hono';
import { type AppEnv, requestHeader } from './app-env.ts';

/** The key and sandbox a token must match. */
export interface TokenOptions {
  key: Buffer;
  sandboxId: string;
}

/** One verifier (and its memory of good tokens) per sandbox key. */
const verifiers = new WeakMap<Buffer, TokenVerifier>();

function verifierOf(key: Buffer): TokenVerifier {
  let verifier = verifiers.get(key);
  if (verifier === undefined) {
    verifier = new TokenVerifier(() => key, 256);
    verifiers.set(key, verifier);
  }
  return verifier;
}

/**
 * Checks an `Authorization` header value: `Bearer <token>` signed with this
 * sandbox's key and issued for this sandbox. Answers the error to send, or
 * undefined when the token is good.
 */
export function checkBearer(header: string | undefined, options: TokenOptions): ServiceError | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  if (!match?.[1]) return new ServiceError(ErrorCode.TOKEN_INVALID, 'Missing bearer token');
  const check = verifierOf(options.key).verify(match[1], { sandboxId: options.sandboxId });
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
    const error = checkBearer(requestHeader(c, 'authorization'), options);
    if (error) throw error;
    await next();
  };
}
