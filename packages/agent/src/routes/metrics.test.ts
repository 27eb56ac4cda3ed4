import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { healthResponseSchema, jupyterSessionSchema } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
let cgroup: string;

/** Writes a cgroup v1 tree like the one mounted read-only inside a sandbox. */
async function fakeCgroup(root: string, values: { usage: number; cpuNs: number; pids: number }): Promise<void> {
  const files: Record<string, string> = {
    'memory/memory.usage_in_bytes': String(values.usage),
    'memory/memory.limit_in_bytes': String(512 * 1024 * 1024),
    'memory/memory.stat': 'cache 4096\nrss 100\ntotal_inactive_file 1048576\n',
    'cpuacct/cpuacct.usage': String(values.cpuNs),
    'pids/pids.current': String(values.pids),
    'pids/pids.max': '256',
    'cpu/cpu.cfs_quota_us': '200000',
    'cpu/cpu.cfs_period_us': '100000',
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), `${text}\n`);
  }
}

beforeAll(async () => {
  cgroup = await mkdtemp(join(tmpdir(), 'warren-cgroup-'));
  await fakeCgroup(cgroup, { usage: 64 * 1024 * 1024, cpuNs: 1e9, pids: 7 });
  agent = await createTestAgent({
    WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    WARREN_AGENT_CGROUP_ROOT: cgroup,
  });
});
afterAll(async () => {
  await agent.cleanup();
  await rm(cgroup, { recursive: true, force: true });
});

interface Snapshot {
  total_executions: number;
  requests_total: number;
  error_count: number;
  system: {
    source: string;
    cpu: { usage_percent: number; cores: number; usage_seconds_total: number };
    memory: { total: number; used: number; usage_bytes: number; usage_percent: number };
    pids: { current: number; max: number };
    disk: { total: number };
  };
  process: { count: number };
  agent: { rss_bytes: number; pid: number };
}

async function snapshot(path = '/metrics/snapshot'): Promise<Snapshot> {
  const res = await agent.request(path);
  expect(res.status).toBe(200);
  return (await res.json()) as Snapshot;
}

describe('metrics', () => {
  it('reads the sandbox cgroup and /proc, and counts requests and executions', async () => {
    await agent.json('POST', '/commands/run', { command: 'true' });
    await agent.request('/files/read?path=/nope'); // 403: an error
    const s = await snapshot();
    expect(s.system.source).toBe('cgroup-v1');
    expect(s.system.memory).toMatchObject({
      usage_bytes: 64 * 1024 * 1024,
      used: 63 * 1024 * 1024, // usage minus inactive file cache
      total: 512 * 1024 * 1024,
      usage_percent: 12.3,
    });
    expect(s.system.cpu).toMatchObject({ cores: 2, usage_seconds_total: 1 });
    expect(s.system.pids).toEqual({ current: 7, max: 256 });
    expect(s.system.disk.total).toBeGreaterThan(0);
    expect(s.process.count).toBeGreaterThan(1);
    expect(s.agent.pid).toBe(process.pid);
    expect(s.agent.rss_bytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(s.total_executions).toBeGreaterThanOrEqual(1);
    expect(s.requests_total).toBeGreaterThanOrEqual(2);
    expect(s.error_count).toBeGreaterThanOrEqual(1);
  });

  it('computes CPU use as a rate between samples', async () => {
    await fakeCgroup(cgroup, { usage: 80 * 1024 * 1024, cpuNs: 1e9, pids: 9 });
    await snapshot();
    await new Promise((r) => setTimeout(r, 300));
    // 0.3 s of one full CPU out of a 2-CPU limit: about 50 %.
    await fakeCgroup(cgroup, { usage: 80 * 1024 * 1024, cpuNs: 1e9 + 3e8, pids: 9 });
    const s = await snapshot('/metrics');
    expect(s.system.cpu.usage_percent).toBeGreaterThan(25);
    expect(s.system.cpu.usage_percent).toBeLessThan(75);
    expect(s.system.memory.usage_bytes).toBe(80 * 1024 * 1024);
  });

  it('serves the Prometheus text format', async () => {
    const res = await agent.request('/metrics/prometheus');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^# HELP warren_agent_uptime_seconds /m);
    expect(text).toMatch(/^# TYPE warren_agent_requests_total counter$/m);
    expect(text).toMatch(/^warren_sandbox_memory_usage_bytes 83886080$/m);
    expect(text).toMatch(/^warren_sandbox_pids_current 9$/m);
    for (const line of text.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+ -?[\d.e+]+)$/);
  });
});

describe('health, info and the small routes', () => {
  it('reports the python executor truthfully once the kernel probe is done', async () => {
    // The host has no ipykernel: the first python run finds out and falls back to a process.
    const run = await agent.json('POST', '/execute', { code: 'print(1)' });
    expect(await run.json()).toMatchObject({ stdout: '1\n' });
    const health = healthResponseSchema.parse(await (await agent.app.request('/health')).json());
    expect(health.features).toMatchObject({
      ipython_kernel: false,
      python_executor: 'process',
      terminal_access: true,
      websocket_streaming: true,
      background_jobs: true,
      system_metrics: true,
    });
    const info = (await (await agent.request('/info')).json()) as {
      features: unknown;
      endpoints: Record<string, string>;
    };
    expect(info.features).toEqual(health.features);
    expect(info.endpoints.terminal).toBe('WS /terminal');
  });

  it('lists no Jupyter sessions without a kernel, under both names', async () => {
    for (const path of ['/jupyter/sessions', '/jupyter/status']) {
      const res = await agent.request(path);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { sessions: unknown[]; available: boolean };
      expect(body.sessions.map((s) => jupyterSessionSchema.parse(s))).toEqual([]);
      expect(body.available).toBe(false);
    }
  });

  it('answers the cache routes with honest zeros', async () => {
    expect(await (await agent.request('/cache/stats')).json()).toMatchObject({
      cache: { size: 0, total_hits: 0, enabled: false },
      hits: 0,
      misses: 0,
    });
    const cleared = await agent.request('/cache/clear', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    expect(await cleared.json()).toMatchObject({ message: 'Cache cleared', entries_removed: 0 });
  });

  it('answers /ping, /system and /', async () => {
    expect(await (await agent.request('/ping')).json()).toMatchObject({ status: 'ok', message: 'pong' });
    expect(await (await agent.request('/system')).json()).toMatchObject({
      cpu_cores: 2,
      memory_total: 512 * 1024 * 1024,
      metrics_source: 'cgroup-v1',
      sandbox_id: agent.sandboxId,
    });
    const root = (await (await agent.request('/')).json()) as { endpoints: Record<string, string> };
    expect(root.endpoints.execute_background).toBe('POST /execute/background');
    expect((await agent.app.request('/ping')).status).toBe(401);
  });
});
