import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxCgroups } from './leaks.ts';
import { removeTestNetwork, type ServerHandle, startServer, stopServer, testNetwork } from './server.ts';

// A server of its own, with short build limits (3 s per RUN step, 8 s per build) and a pool for a user template.
const net = testNetwork(60 + Number(process.env.WARREN_TEST_SLOT ?? 0));

describe('template build limits, restarts and pooled user templates', () => {
  let server: ServerHandle;
  let dataDir: string;

  const api = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.baseURL}${path}`, {
      method,
      headers: { authorization: `Bearer ${server.apiKey}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };

  const start = () =>
    startServer({
      dataDir,
      ...net,
      apiKey: 'wrn_test_limits_key_0123456789',
      // `pooledapp` does not exist yet: the pool fills once a build makes it active.
      env: {
        WARREN_POOL: 'pooledapp=1',
        WARREN_BUILD_STEP_TIMEOUT_SECONDS: '3',
        WARREN_BUILD_TIMEOUT_SECONDS: '8',
        WARREN_IMAGE_REGISTRIES: 'registry.example.invalid',
      },
    });

  const finished = async (id: string) => {
    for (;;) {
      const s = await api<{ status: string; error_message?: string }>('GET', `/v1/templates/build/${id}/status`);
      if (s.body.status !== 'building') return s.body;
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  beforeAll(async () => {
    dataDir = await mkdtemp('/var/tmp/warren-build-limits-');
    server = await start();
  });

  afterAll(async () => {
    if (server) await stopServer(server, { deleteSandboxes: true });
    await removeTestNetwork(net);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a RUN step that outlives its limit fails the build, and its build sandbox is gone', async () => {
    const r = await api<{ build_id: string }>('POST', '/v1/templates/build', {
      name: 'sleeps-step',
      from_image: 'base',
      steps: [{ type: 'RUN', args: [`sleep 30 # ${Date.now()}`] }],
    });
    expect(r.status).toBe(201);
    const s = await finished(r.body.build_id);
    expect(s.status).toBe('failed');
    expect(s.error_message).toMatch(/RUN timed out after 3 s/);
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
  }, 60_000);

  it('a build that outlives the total limit fails even when every step is within its own', async () => {
    const r = await api<{ build_id: string }>('POST', '/v1/templates/build', {
      name: 'sleeps-total',
      from_image: 'base',
      steps: [1, 2, 3, 4, 5].map((n) => ({ type: 'RUN', args: [`sleep 2.5 # ${n} ${Date.now()}`] })),
    });
    const s = await finished(r.body.build_id);
    expect(s.status).toBe('failed');
    expect(s.error_message).toBe('build exceeded its 8 s limit');
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
  }, 60_000);

  it('pulls only from the registries WARREN_IMAGE_REGISTRIES allows', async () => {
    const r = await api<{ build_id: string }>('POST', '/v1/templates/build', {
      name: 'not-allowed',
      from_image: '127.0.0.1:5999/team/app:1',
      steps: [],
    });
    const s = await finished(r.body.build_id);
    expect(s.status).toBe('failed');
    expect(s.error_message).toBe(
      'registry 127.0.0.1:5999 is not allowed on this server (WARREN_IMAGE_REGISTRIES: registry.example.invalid)',
    );
  });

  it('a build interrupted by a server crash is reported failed after the restart, with nothing left running', async () => {
    const r = await api<{ build_id: string }>('POST', '/v1/templates/build', {
      name: 'crashes',
      from_image: 'base',
      steps: [{ type: 'RUN', args: [`sleep 2.9 # ${Date.now()}`] }],
    });
    // Wait until the build sandbox runs, then kill the server hard.
    for (let i = 0; i < 100 && (await sandboxCgroups(net.cgroupParent)).length === 0; i++) {
      await new Promise((res) => setTimeout(res, 100));
    }
    expect((await sandboxCgroups(net.cgroupParent)).length).toBe(1);
    server.child.kill('SIGKILL');
    await new Promise((res) => server.child.once('exit', res));
    server = await start();
    const s = await api<{ status: string; error_message?: string }>(
      'GET',
      `/v1/templates/build/${r.body.build_id}/status`,
    );
    expect(s.body.status).toBe('failed');
    expect(s.body.error_message).toBe('the server restarted during the build');
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
  }, 90_000);

  it('pools a user template with a start command only once ready, and replaces the pool on a rebuild', async () => {
    const build = async (version: string) => {
      const r = await api<{ build_id: string }>('POST', '/v1/templates/build', {
        name: 'pooledapp',
        from_image: 'base',
        update: true,
        steps: [{ type: 'RUN', args: [`echo ${version}-${Date.now()} > /version`] }],
        startCmd: "sh -c 'sleep 1; touch /tmp/ready; exec sleep infinity'",
        readyCmd: { type: 'file', path: '/tmp/ready', timeout: 20_000 },
      });
      expect(r.status).toBe(201);
      expect((await finished(r.body.build_id)).status).toBe('active');
      return r.body.build_id;
    };
    // Pool sandboxes are never listed by the API: read their state from the server's database (read-only).
    const pooledOnce = async (not: readonly string[]) => {
      const db = new Database(join(dataDir, 'warren.db'), { readonly: true });
      try {
        for (let i = 0; i < 300; i++) {
          const rows = db
            .prepare(
              "SELECT id, status FROM sandboxes WHERE api_key_id = 'key_pool' AND status IN ('creating', 'pooled')",
            )
            .all() as Array<{ id: string; status: string }>;
          const fresh = rows.filter((r) => !not.includes(r.id));
          if (rows.length === 1 && fresh.length === 1 && fresh[0]?.status === 'pooled') return fresh[0].id;
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        db.close();
      }
      throw new Error('the pool did not fill');
    };
    const claim = async (id: string) => {
      const sb = await api<{ id: string; auth_token: string }>('POST', '/v1/sandboxes', { template_id: id });
      expect(sb.status).toBe(201);
      const res = await fetch(`${server.baseURL}/commands/run`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sb.body.auth_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ command: 'cut -d- -f1 /version; test -e /tmp/ready && echo ready' }),
      });
      const out = ((await res.json()) as { stdout: string }).stdout;
      await api('DELETE', `/v1/sandboxes/${sb.body.id}`);
      return { id: sb.body.id, out };
    };

    const id = await build('v1');
    const first = await pooledOnce([]);
    const a = await claim(id);
    expect(a).toEqual({ id: first, out: 'v1\nready\n' });

    const second = await pooledOnce([first]);
    await build('v2');
    const third = await pooledOnce([first, second]);
    const b = await claim(id);
    expect(b).toEqual({ id: third, out: 'v2\nready\n' });

    await api('DELETE', `/v1/templates/${id}`);
    for (let i = 0; i < 100 && (await sandboxCgroups(net.cgroupParent)).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
  }, 120_000);
});
