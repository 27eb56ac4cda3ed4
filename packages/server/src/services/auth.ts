import { createHash, randomBytes } from 'node:crypto';
import { ErrorCode, ServiceError } from '@warren/protocol';
import type { ApiKeyRow, Store } from '../store/store.ts';

/** Hash an API key is stored and looked up by (keys are random and long, so one SHA-256 is enough). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new random API key. */
export function generateApiKey(): string {
  return `wrn_live_${randomBytes(24).toString('base64url')}`;
}

/**
 * Makes sure an API key exists. `WARREN_API_KEY` is registered when given;
 * otherwise, on first start, a key is generated and returned so the caller can
 * print it once.
 */
export function bootstrapApiKey(store: Store, configured: string | undefined): { printedKey?: string } {
  if (configured !== undefined) {
    if (!store.findApiKeyByHash(hashApiKey(configured))) {
      store.insertApiKey({
        id: `key_${randomBytes(8).toString('hex')}`,
        keyHash: hashApiKey(configured),
        name: 'WARREN_API_KEY',
        maxSandboxes: null,
        createdAt: Date.now(),
      });
    }
    return {};
  }
  if (store.countApiKeys() > 0) return {};
  const key = generateApiKey();
  store.insertApiKey({
    id: `key_${randomBytes(8).toString('hex')}`,
    keyHash: hashApiKey(key),
    name: 'generated',
    maxSandboxes: null,
    createdAt: Date.now(),
  });
  return { printedKey: key };
}

/**
 * Finds the key a request carries in `X-API-Key` or `Authorization: Bearer`.
 * @throws ServiceError AUTHENTICATION_REQUIRED / INVALID_TOKEN.
 */
export function authenticate(
  store: Store,
  headers: { apiKey?: string | undefined; authorization?: string | undefined },
): ApiKeyRow {
  const bearer = /^Bearer\s+(.+)$/i.exec(headers.authorization ?? '')?.[1]?.trim();
  const key = headers.apiKey?.trim() || bearer;
  if (!key)
    throw new ServiceError(ErrorCode.AUTHENTICATION_REQUIRED, 'API key required (X-API-Key or Authorization: Bearer)');
  const row = store.findApiKeyByHash(hashApiKey(key));
  if (!row) throw new ServiceError(ErrorCode.INVALID_TOKEN, 'Invalid API key');
  return row;
}
