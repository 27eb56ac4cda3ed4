import { rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import { z } from 'zod';
import { authenticate } from '../services/auth.ts';
import { type ApiKeyInfo, KeyService } from '../services/keys.ts';
import type { ApiKeyRow, Store } from '../store/store.ts';
import { jsonBody, parse } from './control.ts';

export interface KeyRouteDeps {
  store: Store;
  /** @default a KeyService over `store` */
  keys?: KeyService;
}

type Env = { Variables: { requestId: string; apiKey: ApiKeyRow } };

const createKeyBody = z.strictObject({
  name: z
    .string()
    .trim()
    .min(1)
    .max(100)
    .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters'),
  max_sandboxes: z.number().int().min(1).max(100_000).nullable().optional(),
});

const keyIdParam = z.object({ id: z.string().regex(/^key_[0-9a-f]{16}$/, 'not an API key id') });

function keyView(info: ApiKeyInfo, caller: ApiKeyRow) {
  return {
    id: info.row.id,
    object: 'api_key',
    name: info.row.name,
    max_sandboxes: info.row.maxSandboxes,
    created_at: rfc3339(info.row.createdAt),
    live_sandboxes: info.liveSandboxes,
    current: info.row.id === caller.id,
  };
}

/**
 * API-key management under /v1 (Warren's own, not part of the Hopx API):
 * `POST /api-keys {name, max_sandboxes?}` → 201 the key with its secret in
 * `key` (shown once); `GET /api-keys` → the list (no secrets);
 * `DELETE /api-keys/{id}` revokes. Any valid key may call them (see KeyService).
 */
export function keyRoutes(deps: KeyRouteDeps): Hono<Env> {
  const app = new Hono<Env>();
  const keys = deps.keys ?? new KeyService(deps.store);

  app.use('*', async (c, next) => {
    c.set(
      'apiKey',
      authenticate(deps.store, { apiKey: c.req.header('x-api-key'), authorization: c.req.header('authorization') }),
    );
    await next();
  });

  app.post('/api-keys', async (c) => {
    const body = parse(createKeyBody, await jsonBody(c));
    const { info, key } = keys.create({ name: body.name, maxSandboxes: body.max_sandboxes ?? null });
    return c.json({ ...keyView(info, c.get('apiKey')), key, request_id: c.get('requestId') }, 201);
  });

  app.get('/api-keys', (c) => {
    const caller = c.get('apiKey');
    return c.json({
      object: 'list',
      data: keys.list().map((info) => keyView(info, caller)),
      has_more: false,
      url: '/v1/api-keys',
      request_id: c.get('requestId'),
    });
  });

  app.delete('/api-keys/:id', (c) => {
    const { id } = parse(keyIdParam, { id: c.req.param('id') });
    const row = keys.revoke(c.get('apiKey'), id);
    return c.json({ id: row.id, object: 'api_key', deleted: true, request_id: c.get('requestId') });
  });

  return app;
}
