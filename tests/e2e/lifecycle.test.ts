import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import Database from 'better-sqlite3';
import { describe, expect, inject, it } from 'vitest';
import { vethName } from '../../packages/server/src/runtime/container/network.ts';
import { agent, cp, createSandbox, deleteSandbox, sh } from './client.ts';
import { bridgeVeths, namedNetns, tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');

/** A request straight to an agent's unix socket, bypassing the gateway. */
function direct(socketPath: string, token: string): Promise<number> {
  return new Promise((ok, fail) => {
    const req = request({ socketPath, path: '/info', headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      ok(res.statusCode ?? 0);
    });
    req.on('error', fail);
    req.end();
  });
}

describe('sandbox lifecycle and tokens', () => {
  it('refreshed tokens and earlier tokens both work; a deleted sandbox answers 404 and leaves nothing', async () => {
    const sb = await createSandbox({ template_name: 'base' });
    const info = await cp<{ status: string; public_host: string; resources: { vcpu: number } }>(
      'GET',
      `/v1/sandboxes/${sb.id}`,
    );
    expect(info.body.status).toBe('running');
    expect(info.body.resources.vcpu).toBe(1);

    const refreshed = await cp<{ auth_token: string; token_expires_at: string }>(
      'POST',
      `/v1/sandboxes/${sb.id}/token/refresh`,
    );
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.auth_token).not.toBe(sb.auth_token);
    expect(Date.parse(refreshed.body.token_expires_at) - Date.now()).toBeGreaterThan(3600_000);
    expect(refreshed.body.token_expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect((await agent(sb, 'GET', '/info')).status).toBe(200);
    expect((await agent(sb, 'GET', '/info', undefined, { token: refreshed.body.auth_token })).status).toBe(200);

    await deleteSandbox(sb);
    expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
    const gone = await agent<{ code: string; message: string }>(sb, 'GET', '/info');
    expect(gone.status).toBe(404);
    expect(gone.body.message).toMatch(/Sandbox .* not found/);
    expect((await cp('GET', `/v1/sandboxes/${sb.id}`)).status).toBe(404);
    expect((await cp('DELETE', `/v1/sandboxes/${sb.id}`)).status).toBe(404);
  });

  it('DELETE answers once every process of the sandbox is dead; the rest of the teardown follows', async () => {
    const sb = await createSandbox({ template_name: 'base' });
    expect((await sh(sb, 'nohup sleep 1000 >/dev/null 2>&1 & echo started')).stdout.trim()).toBe('started');
    const procs = `/sys/fs/cgroup/pids/${ctx.cgroupParent}/${sb.id}/cgroup.procs`;
    const before = (await readFile(procs, 'utf8')).split('\n').filter(Boolean);
    expect(before.length).toBeGreaterThanOrEqual(3); // init, agent, sleep
    expect((await cp('DELETE', `/v1/sandboxes/${sb.id}`)).status).toBe(200);
    // Right after the answer: no process is left (the cgroup is empty, or already removed).
    expect((await readFile(procs, 'utf8').catch(() => '')).trim()).toBe('');
    for (const pid of before) {
      // Gone, or dead and waiting to be reaped by its parent outside the sandbox.
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      expect(['', 'Z', 'X']).toContain(
        stat === '' ? '' : stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3),
      );
    }
    expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
  });

  it("a sandbox's agent refuses another sandbox's token, even straight on its socket", async () => {
    const [a, b] = await Promise.all([
      createSandbox({ template_name: 'base' }),
      createSandbox({ template_name: 'base' }),
    ]);
    try {
      const socketB = `${ctx.dataDir}/sandboxes/${b.id}/run/agent.sock`;
      expect(await direct(socketB, b.auth_token)).toBe(200);
      expect(await direct(socketB, a.auth_token)).toBe(401);
    } finally {
      await Promise.all([deleteSandbox(a), deleteSandbox(b)]);
    }
  });

  it('creating and deleting many sandboxes concurrently leaves nothing behind', async () => {
    const sandboxes = await Promise.all(Array.from({ length: 8 }, () => createSandbox({ template_name: 'base' })));
    const outputs = await Promise.all(sandboxes.map((s) => sh(s, 'hostname')));
    expect(outputs.map((o) => o.stdout.trim())).toEqual(sandboxes.map((s) => s.id));
    await Promise.all(sandboxes.map(deleteSandbox));
    for (const s of sandboxes) expect(await tracesAfterTeardown(s.id, ctx)).toEqual([]);
  });

  it('no deleted sandbox of this run left a mount, netns, veth, cgroup, process or directory', async () => {
    const readRows = () => {
      const db = new Database(`${ctx.dataDir}/warren.db`, { readonly: true, fileMustExist: true });
      const rows = db.prepare('SELECT id, status, address_index FROM sandboxes').all() as Array<{
        id: string;
        status: string;
        address_index: number;
      }>;
      db.close();
      return rows;
    };
    const deleted = readRows().filter((r) => r.status === 'deleted' || r.status === 'error');
    expect(deleted.length).toBeGreaterThan(0);
    for (const r of deleted) expect(await tracesAfterTeardown(r.id, ctx)).toEqual([]);
    // Every veth on the bridge belongs to a live sandbox. The pool may boot sandboxes meanwhile (a row is
    // written before its veth exists), so the live rows are read after the veths are listed.
    const veths = await bridgeVeths(ctx.bridge);
    const live = readRows().filter((r) => !['deleted', 'error'].includes(r.status));
    const liveVeths = new Set(live.map((r) => vethName(ctx.bridge, r.address_index)));
    for (const veth of veths) expect(liveVeths).toContain(veth);
    expect((await namedNetns()).filter((n) => n.includes('warren') || n.includes('sb'))).toEqual([]);
  });
});
