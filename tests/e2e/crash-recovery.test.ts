import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeVeths, sandboxCgroups, tracesAfterTeardown, tracesOf } from './leaks.ts';
import { removeTestNetwork, type ServerHandle, startServer, stopServer, testNetwork } from './server.ts';

const slot = Number(process.env.WARREN_TEST_SLOT ?? 0);
const net = testNetwork(30 + slot);
const API_KEY = 'wrn_test_crash_key_0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sb {
  id: string;
  auth_token: string;
  public_host: string;
}

function exec(argv: string[]): Promise<string> {
  return new Promise((ok, fail) =>
    execFile(argv[0]!, argv.slice(1), (err, stdout, stderr) =>
      err ? fail(new Error(`${err.message}\n${stderr}`)) : ok(stdout),
    ),
  );
}

describe('crash recovery and restarts (a server of its own)', () => {
  let dataDir: string;
  let server: ServerHandle;
  const ctx = () => ({ dataDir, cgroupParent: net.cgroupParent, bridge: net.bridge });

  // Sandboxes outlive the server here unless a test asks otherwise: that is what these tests are about.
  const start = async (stopSandboxesOnExit = false) => {
    server = await startServer({
      dataDir,
      ...net,
      apiKey: API_KEY,
      env: { WARREN_POOL: '0', WARREN_STOP_SANDBOXES_ON_EXIT: String(stopSandboxesOnExit) },
    });
  };
  const cp = async <T>(method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.baseURL}${path}`, {
      method,
      headers: { 'x-api-key': API_KEY, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
  const run = async (sb: Sb, command: string) => {
    const res = await fetch(`${server.baseURL}/commands/run`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sb.auth_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command: 'bash', args: ['-c', command] }),
    });
    return { status: res.status, body: (await res.json()) as { stdout: string; exit_code: number } };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp('/var/tmp/warren-crash-');
    await start();
  });

  afterAll(async () => {
    await stopServer(server, { deleteSandboxes: true });
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
    await removeTestNetwork(net);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('after kill -9 and a restart: sandboxes keep running, a vanished one is reported and cleaned, nothing leaks', async () => {
    const a = (await cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' })).body;
    const b = (await cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' })).body;
    expect((await run(a, 'echo survived > /workspace/file.txt')).body.exit_code).toBe(0);
    await run(a, "setsid bash -c 'sleep 1000' >/dev/null 2>&1 < /dev/null & sleep 0.3");
    const sleeperBefore = (await run(a, 'pgrep -f "sleep 1000"')).body.stdout.trim();
    expect(sleeperBefore).toMatch(/^\d+$/);

    server.child.kill('SIGKILL');
    await new Promise((ok) => server.child.once('exit', ok));
    // While the server is down, B's container dies.
    await exec(['crun', '--root', `${dataDir}/crun`, 'kill', b.id, 'KILL']);
    await sleep(500);

    await start();
    expect(server.output()).toMatch(/reconciled sandboxes: 1 adopted, 1 cleaned/);

    // A: same token, same files, same background process, still runs code.
    const after = await run(a, 'cat /workspace/file.txt; pgrep -f "sleep 1000"');
    expect(after.status).toBe(200);
    expect(after.body.stdout).toBe(`survived\n${sleeperBefore}\n`);
    expect((await cp<{ status: string }>('GET', `/v1/sandboxes/${a.id}`)).body.status).toBe('running');

    // B: reported as failed, and nothing of it is left.
    const bInfo = await cp<{ status: string }>('GET', `/v1/sandboxes/${b.id}`);
    expect(bInfo.body.status).toBe('error');
    expect(await tracesOf(b.id, ctx())).toEqual([]);
    expect((await run(b, 'echo x')).status).toBe(404);

    expect((await cp('DELETE', `/v1/sandboxes/${a.id}`)).status).toBe(200);
    expect(await tracesAfterTeardown(a.id, ctx())).toEqual([]);
    expect(await bridgeVeths(net.bridge)).toEqual([]);
  });

  it('a sandbox with a 5 s timeout dies on time although the server restarted in between', async () => {
    const t0 = Date.now();
    const sb = (
      await cp<Sb & { expires_at: string }>('POST', '/v1/sandboxes', { template_name: 'base', timeout_seconds: 5 })
    ).body;
    const expiresAt = Date.parse(sb.expires_at);
    const stopped = new Promise((ok) => server.child.once('exit', ok));
    server.child.kill('SIGTERM');
    await stopped;
    await sleep(1000);
    await start();
    let goneAt = 0;
    while (Date.now() - t0 < 12_000) {
      if ((await cp('GET', `/v1/sandboxes/${sb.id}`)).status === 404) {
        goneAt = Date.now();
        break;
      }
      await sleep(100);
    }
    expect(goneAt).toBeGreaterThan(0);
    // Within a second of expires_at (the deadline; expires_at is stored with one-second precision).
    expect(goneAt - expiresAt).toBeLessThan(2000);
    expect(await tracesAfterTeardown(sb.id, ctx())).toEqual([]);
  });

  it('SIGTERM with WARREN_STOP_SANDBOXES_ON_EXIT deletes every sandbox', async () => {
    await stopServer(server, { deleteSandboxes: false });
    await start(true);
    const sb = (await cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' })).body;
    expect(await tracesOf(sb.id, ctx())).not.toEqual([]);
    await stopServer(server, { deleteSandboxes: false });
    expect(await tracesOf(sb.id, ctx())).toEqual([]);
    await start();
  });

  it('SIGTERM while creates are still booting: they finish before the store closes, and nothing is left', async () => {
    await stopServer(server, { deleteSandboxes: false });
    await start(true);
    const before = server.output().length;
    // Cold creates (pool 0) boot for a few hundred ms; the signal arrives while they do.
    const creates = Array.from({ length: 3 }, () =>
      cp<Sb>('POST', '/v1/sandboxes', { template_name: 'base' }).catch((err: Error) => err),
    );
    await sleep(60);
    const exited = new Promise<number | null>((ok) => server.child.once('exit', ok));
    server.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await Promise.all(creates);
    const log = server.output().slice(before);
    expect(log).not.toMatch(/database connection is not open|boot failed|set-up failed/);
    // Every sandbox the creates made was deleted by the shutdown, traces and all.
    expect(await sandboxCgroups(net.cgroupParent)).toEqual([]);
    expect(await exec(['crun', '--root', `${dataDir}/crun`, 'list', '--quiet'])).toBe('');
    expect(await bridgeVeths(net.bridge)).toEqual([]);
    await start();
  });
});
