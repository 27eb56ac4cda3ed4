import { ErrorCode, ServiceError, verifySandboxToken } from '@warren/protocol';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './app-env.ts';

/**
 * Requires `Authorization: Bearer <token>` signed with this sandbox's key and
 * issued for this sandbox.
 * @throws {ServiceError} `TOKEN_EXPIRED` for an expired token, `TOKEN_INVALID` otherwise.
 */
export function requireToken(options: { key: Buffer; sandboxId: string }): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match?.[1]) throw new ServiceError(ErrorCode.TOKEN_INVALID, 'Missing bearer token');
    const check = verifySandboxToken(options.key, match[1], { sandboxId: options.sandboxId });
    if (!check.ok) {
      if (check.reason === 'expired') throw new ServiceError(ErrorCode.TOKEN_EXPIRED, 'Token expired');
      throw new ServiceError(ErrorCode.TOKEN_INVALID, 'Invalid token');
    }
    await next();
  };
}
