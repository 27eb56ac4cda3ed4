import { mkdtemp, rm } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { vethName } from '../../packages/server/src/runtime/container/network.ts';
import { bridgeVeths, sandboxCgroups, tracesAfterTeardown } from './leaks.ts';
import { removeTestNetwork, type ServerHandle, startServer, stopServer, testNetwork } from './server.ts';

const slot = Number(process.env.WARREN_TEST_SLOT ?? 0);
const API_KEY = 'wrn_test_pool_key_0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sb {
  id: string;
  auth_token: string;
  public_host: string;
}

/** A server of its own with the given settings; `close` deletes its sandboxes and host state. */
async function serverWith(n: number, env: Record<string, string>) {
  const net = testNetwork(40 + slot * 3 + n);
  const dataDir = await mkdtemp('/var/tmp/warren-pool-');
  const handle: ServerHandle = await startServer({ dataDir, ...net, apiKey: API_KEY, env });
  const ctx = { dataDir, cgroupParent: net.cgroupParent, bridge: net.bridge };
  const cp = async <T>(method: string, path: string, body?: unknown) => {
    const res = await fetch(`${handle.baseURL}${path}`, {
      method,
      headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
  const exec = async (sb: Sb, path: string, body: unknown) => {
    const res = await fetch(`${handle.baseURL}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sb.auth_token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { stdout: string; exit_code: number } };
  };
  const rows = (status: string) => {
    const db = new Database(`${dataDir}/warren.db`, { readonly: true, fileMustExist: true });
    try {
      return (
        db.prepare('SELECT id, address_index FROM sandboxes WHERE status = ?').all(status) as Array<{
          id: string;
          address_index: number;
        }>
      ).map((r) => r);
    } finally {
      db.close();
    }
  };
  const close = async () => {
    // Test servers delete every sandbox on SIGTERM, warm-pool ones included.
    await stopServer(handle, { deleteSandboxes: true });
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
    await removeTestNetwork(net);
    await rm(dataDir, { recursive: true, force: true });
  };
  return { handle, net, ctx, cp, exec, rows, close };
}

type TestServer = Awaited<ReturnType<typeof serverWith>>;

/** create → run python → delete, `count` times at once; returns the ids. */
async function burst(s: TestServer, count: number): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const created = await s.cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' });
      expect(created.status).toBe(201);
      const sb = created.body;
      const ran = await s.exec(sb, '/execute', { code: `print(${i} * 2)`, language: 'python' });
      expect(ran.status).toBe(200);
      expect(ran.body.stdout).toBe(`${i * 2}\n`);
      expect((await s.cp('DELETE', `/v1/sandboxes/${sb.id}`)).status).toBe(200);
      return sb.id;
    }),
  );
}

describe('warm pool and concurrency (servers of their own)', () => {
  let current: TestServer | undefined;
  afterEach(async () => {
    await current?.close();
    current = undefined;
  });
  afterAll(async () => {
    await current?.close();
  });

  it('claims pooled sandboxes atomically, refills, and never hands out state from an earlier user', async () => {
    current = await serverWith(0, { WARREN_POOL: 'base=3' });
    const s = current;
    const deadline = Date.now() + 60_000;
    while (s.rows('pooled').length < 3 && Date.now() < deadline) await sleep(200);
    const pooled = new Set(s.rows('pooled').map((r) => r.id));
    expect(pooled.size).toBe(3);

    const first = (await s.cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base', env_vars: { WHO: 'first' } })).body;
    expect(pooled.has(first.id)).toBe(true);
    const wrote = await s.exec(first, '/commands/run', {
      command: 'bash',
      args: ['-c', 'echo secret > /workspace/secret.txt; echo secret > /tmp/secret.txt; echo $WHO'],
    });
    expect(wrote.body.stdout).toBe('first\n');
    expect((await s.cp('DELETE', `/v1/sandboxes/${first.id}`)).status).toBe(200);

    // More creates than the pool holds: claimed ones and cold ones alike start clean.
    const later = await Promise.all(
      Array.from({ length: 6 }, () => s.cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' }).then((r) => r.body)),
    );
    expect(new Set(later.map((l) => l.id)).size).toBe(6);
    expect(later.filter((l) => pooled.has(l.id)).length).toBe(2);
    for (const sb of later) {
      const look = await s.exec(sb, '/commands/run', {
        command: 'bash',
        args: ['-c', 'ls /workspace /tmp; echo "WHO=$WHO"'],
      });
      expect(look.body.stdout).not.toContain('secret');
      expect(look.body.stdout).toContain('WHO=\n');
    }
    await Promise.all(later.map((l) => s.cp('DELETE', `/v1/sandboxes/${l.id}`)));

    // The pool refills in the background.
    const refillDeadline = Date.now() + 60_000;
    while (s.rows('pooled').length < 3 && Date.now() < refillDeadline) await sleep(200);
    expect(s.rows('pooled').length).toBe(3);
    for (const id of [first.id, ...later.map((l) => l.id)]) expect(await tracesAfterTeardown(id, s.ctx)).toEqual([]);
  });

  it('a pooled code-interpreter sandbox is handed out with its Python kernel already warm', async () => {
    current = await serverWith(2, { WARREN_POOL: 'code-interpreter=1' });
    const s = current;
    const deadline = Date.now() + 90_000;
    while (s.rows('pooled').length < 1 && Date.now() < deadline) await sleep(200);
    const pooled = new Set(s.rows('pooled').map((r) => r.id));
    expect(pooled.size).toBe(1);
    const sb = (await s.cp<Sb>('POST', '/v1/sandboxes', { template_name: 'code-interpreter' })).body;
    expect(pooled.has(sb.id)).toBe(true);
    const health = await fetch(`${s.handle.baseURL}/health`, { headers: { authorization: `Bearer ${sb.auth_token}` } });
    const features = ((await health.json()) as { features: Record<string, unknown> }).features;
    expect(features.python_executor).toBe('jupyter-kernel');
    expect(features.kernel_state).toBe('idle');
    const ran = await s.exec(sb, '/execute', { code: 'x = 6 * 7\nx', language: 'python' });
    expect((ran.body as unknown as { result: string }).result).toBe('42');
  });

  it('50 concurrent create → runCode → kill succeed with the pool enabled and leave nothing behind', async () => {
    const s = await serverWith(1, { WARREN_POOL: 'base=4' });
    current = s;
    const ids = await burst(s, 50);
    expect(new Set(ids).size).toBe(50);
    for (const id of ids) expect(await tracesAfterTeardown(id, s.ctx)).toEqual([]);
    const live = new Set(
      [...s.rows('pooled'), ...s.rows('creating')].map((r) => vethName(s.net.bridge, r.address_index)),
    );
    for (const veth of await bridgeVeths(current.net.bridge)) expect(live).toContain(veth);
  });

  it('50 concurrent create → runCode → kill succeed with the pool disabled and leave nothing behind', async () => {
    current = await serverWith(2, { WARREN_POOL: '0' });
    const ids = await burst(current, 50);
    expect(new Set(ids).size).toBe(50);
    for (const id of ids) expect(await tracesAfterTeardown(id, current.ctx)).toEqual([]);
    expect(await bridgeVeths(current.net.bridge)).toEqual([]);
  });

  it('a key over its concurrent-sandbox limit gets 403 RESOURCE_LIMIT_ERROR; concurrent deletes are safe', async () => {
    current = await serverWith(0, { WARREN_POOL: 'base=1', WARREN_MAX_SANDBOXES_PER_KEY: '2' });
    const s = current;
    const results = await Promise.all(
      Array.from({ length: 4 }, () => s.cp<Sb & { code?: string }>('POST', '/v1/sandboxes', { template_name: 'base' })),
    );
    const ok = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 403);
    expect(ok.length).toBe(2);
    expect(refused.length).toBe(2);
    const body = refused[0]!.body as unknown as {
      code: string;
      message: string;
      error: { details: { limit: number; current: number; available: number } };
    };
    expect(body.code).toBe('RESOURCE_LIMIT_ERROR');
    expect(body.message.toLowerCase()).toContain('limit');
    expect(body.error.details).toMatchObject({ limit: 2, current: 2, available: 0 });

    const target = ok[0]!.body.id;
    const deletes = await Promise.all(Array.from({ length: 5 }, () => s.cp('DELETE', `/v1/sandboxes/${target}`)));
    for (const d of deletes) expect([200, 404]).toContain(d.status);
    expect(deletes.filter((d) => d.status === 200).length).toBeGreaterThanOrEqual(1);
    expect(await tracesAfterTeardown(target, s.ctx)).toEqual([]);
    // The freed slot can be used again.
    expect((await s.cp('POST', '/v1/sandboxes', { template_name: 'base' })).status).toBe(201);
  });
});
