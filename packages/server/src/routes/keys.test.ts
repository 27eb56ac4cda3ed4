import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { errorResponse } from '../app.ts';
import { bootstrapApiKey, hashApiKey } from '../services/auth.ts';
import { openDatabase } from '../store/db.ts';
import { Store } from '../store/store.ts';
import { keyRoutes } from './keys.ts';

const ROOT_KEY = 'wrn_test_root_key_0123456789';
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** The fields these tests read from an answer: a key, a list of keys, or the error envelope. */
interface KeyAnswer {
  id: string;
  key: string;
  code: string;
  data: Array<{ id: string; name: string; current: boolean }>;
  error: { details: unknown };
  [field: string]: unknown;
}

function fixture() {
  const store = new Store(openDatabase(':memory:'));
  bootstrapApiKey(store, ROOT_KEY);
  const app = new Hono<{ Variables: { requestId: string } }>();
  app.use('*', async (c, next) => {
    c.set('requestId', 'req_test');
    await next();
  });
  app.route('/v1', keyRoutes({ store }));
  app.onError((err) => errorResponse(err, 'req_test', silent));
  const call = async (method: string, path: string, key: string | null, body?: unknown) => {
    const res = await app.request(path, {
      method,
      headers: { ...(key === null ? {} : { 'x-api-key': key }), 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as KeyAnswer };
  };
  return { store, call };
}

describe('API-key routes', () => {
  it('creates a key that authenticates, stores only its hash, and lists it without a secret', async () => {
    const { store, call } = fixture();
    const created = await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'ci runner', max_sandboxes: 3 });
    expect(created.status).toBe(201);
    const secret = created.body.key;
    expect(secret).toMatch(/^wrn_live_/);
    expect(created.body).toMatchObject({ object: 'api_key', name: 'ci runner', max_sandboxes: 3, current: false });
    const row = store.getApiKey(created.body.id);
    expect(row?.keyHash).toBe(hashApiKey(secret));
    expect(JSON.stringify(store.listApiKeys())).not.toContain(secret);

    const listed = await call('GET', '/v1/api-keys', secret);
    expect(listed.status).toBe(200);
    const items = listed.body.data;
    expect(items.map((k) => k.name)).toEqual(['WARREN_API_KEY', 'ci runner']);
    expect(items.find((k) => k.name === 'ci runner')?.current).toBe(true);
    for (const k of items) expect(Object.keys(k)).not.toContain('key');
  });

  it('revokes another key, which then fails to authenticate; never itself', async () => {
    const { call } = fixture();
    const other = await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'temp' });
    const self = (await call('GET', '/v1/api-keys', ROOT_KEY)).body.data.find((k) => k.current);
    if (self === undefined) throw new Error('the calling key is missing from its own list');
    const selfRevoke = await call('DELETE', `/v1/api-keys/${self.id}`, ROOT_KEY);
    expect(selfRevoke.status).toBe(403);
    expect(selfRevoke.body.code).toBe('FORBIDDEN');

    const revoked = await call('DELETE', `/v1/api-keys/${other.body.id}`, ROOT_KEY);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ id: other.body.id, deleted: true });
    const after = await call('GET', '/v1/api-keys', other.body.key);
    expect(after.status).toBe(401);
    expect((await call('GET', '/v1/api-keys', ROOT_KEY)).body.data).toHaveLength(1);
    const again = await call('DELETE', `/v1/api-keys/${other.body.id}`, ROOT_KEY);
    expect(again.status).toBe(404);
  });

  it('refuses to revoke a key that holds live sandboxes', async () => {
    const { store, call } = fixture();
    const other = await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'busy' });
    const t = store.upsertTemplate({
      name: 'base',
      displayName: 'Base',
      description: '',
      category: 'general',
      language: 'python',
      status: 'active',
      isPublic: true,
      rootfsDir: '/x',
      contentHash: 'h',
      resources: { vcpu: 1, memoryMiB: 512, diskMiB: 1024, pidsLimit: 64 },
      env: {},
      workdir: '/workspace',
      features: [],
    });
    const ins = store.insertSandbox(
      {
        id: 'sb1',
        apiKeyId: other.body.id,
        templateId: t.id,
        internetAccess: false,
        region: null,
        envVars: {},
        metadata: {},
        timeoutSeconds: null,
        expiresAt: null,
        createdAt: Date.now(),
      },
      { maxAddressIndex: 100, maxSandboxes: 10 },
    );
    expect(ins.ok).toBe(true);
    const r = await call('DELETE', `/v1/api-keys/${other.body.id}`, ROOT_KEY);
    expect(r.status).toBe(409);
    expect(r.body.error.details).toMatchObject({ live_sandboxes: 1 });
    // Still valid.
    expect((await call('GET', '/v1/api-keys', other.body.key)).status).toBe(200);
  });

  it('validates input and requires a key', async () => {
    const { call } = fixture();
    expect((await call('GET', '/v1/api-keys', null)).status).toBe(401);
    expect((await call('GET', '/v1/api-keys', 'wrn_wrong')).status).toBe(401);
    const noName = await call('POST', '/v1/api-keys', ROOT_KEY, {});
    expect(noName.status).toBe(400);
    expect(noName.body.code).toBe('INVALID_REQUEST');
    expect((await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'a\nb' })).status).toBe(400);
    expect((await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'x', extra: 1 })).status).toBe(400);
    expect((await call('POST', '/v1/api-keys', ROOT_KEY, { name: 'x', max_sandboxes: 0 })).status).toBe(400);
    expect((await call('POST', '/v1/api-keys', ROOT_KEY, '{not json')).status).toBe(400);
    expect((await call('DELETE', '/v1/api-keys/key_pool', ROOT_KEY)).status).toBe(400);
    expect((await call('DELETE', '/v1/api-keys/key_0000000000000000', ROOT_KEY)).status).toBe(404);
  });
});
