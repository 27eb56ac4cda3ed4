import { randomBytes } from 'node:crypto';
import { ErrorCode, ServiceError } from '@warren/protocol';
import type { ApiKeyRow, Store } from '../store/store.ts';
import { generateApiKey, hashApiKey } from './auth.ts';

/** A key as the key-management API shows it: never its secret or hash. */
export interface ApiKeyInfo {
  row: ApiKeyRow;
  /** Sandboxes the key holds now. */
  liveSandboxes: number;
}

/**
 * API-key management. Warren has no users or organisations: every key is an
 * administrator of the installation and may create, list and revoke keys.
 * Sandboxes are visible only to the key that created them. Guards: a key
 * cannot revoke itself (so the last key can never be revoked and nobody locks
 * themselves out), and a key holding live sandboxes cannot be revoked until
 * they are deleted (they would be left without an owner who can reach them).
 */
export class KeyService {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Creates a key; the secret is returned here only (the store keeps its SHA-256). */
  create(input: { name: string; maxSandboxes: number | null }): { info: ApiKeyInfo; key: string } {
    const key = generateApiKey();
    const row: ApiKeyRow = {
      id: `key_${randomBytes(8).toString('hex')}`,
      keyHash: hashApiKey(key),
      name: input.name,
      maxSandboxes: input.maxSandboxes,
      createdAt: Date.now(),
    };
    this.#store.insertApiKey(row);
    return { info: { row, liveSandboxes: 0 }, key };
  }

  /** Every key that can authenticate, oldest first. */
  list(): ApiKeyInfo[] {
    return this.#store.listApiKeys().map((row) => ({ row, liveSandboxes: this.#store.countLive(row.id) }));
  }

  /**
   * Revokes a key: it stops authenticating at once.
   * @throws ServiceError RESOURCE_NOT_FOUND (unknown or already revoked), FORBIDDEN (the caller's own key),
   *   CONFLICT (the key holds live sandboxes; `details.live_sandboxes`).
   */
  revoke(caller: ApiKeyRow, id: string): ApiKeyRow {
    const row = this.#store.getApiKey(id);
    if (!row) throw new ServiceError(ErrorCode.RESOURCE_NOT_FOUND, `API key ${id} does not exist`);
    if (row.id === caller.id) {
      throw new ServiceError(ErrorCode.FORBIDDEN, 'An API key cannot revoke itself; use another key', {
        details: { id },
      });
    }
    const r = this.#store.revokeApiKey(id);
    if (!r.ok && r.reason === 'not_found') {
      throw new ServiceError(ErrorCode.RESOURCE_NOT_FOUND, `API key ${id} does not exist`);
    }
    if (!r.ok && r.reason === 'live') {
      throw new ServiceError(
        ErrorCode.CONFLICT,
        `API key ${id} still holds ${r.live} sandbox(es); delete them with that key first`,
        { details: { id, live_sandboxes: r.live } },
      );
    }
    return row;
  }
}
