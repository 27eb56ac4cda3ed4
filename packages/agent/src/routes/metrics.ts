import { arch, hostname, platform, release } from 'node:os';
import { rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { bootTimeMs, systemUptimeSeconds } from '../services/proc-fs.ts';
import { AGENT_NAME, AGENT_VERSION } from '../version.ts';
import { ENDPOINTS } from './health.ts';

function percent(part: number, whole: number): number {
  return whole > 0 ? Math.round((part / whole) * 10000) / 100 : 0;
}

/**
 * What `/metrics/snapshot` answers (PROTOCOL §8.1): the union of the TS
 * `MetricsSnapshot` type and the Python docstrings, with real numbers from the
 * sandbox's cgroup and /proc and the agent's own counters.
 */
export async function metricsSnapshot(deps: AgentDeps): Promise<Record<string, unknown>> {
  const [sample, systemUptime] = await Promise.all([deps.metrics.sample(), systemUptimeSeconds()]);
  const stats = deps.stats.snapshot();
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  const uptime = (Date.now() - deps.startedAt.getTime()) / 1000;
  const memUsed = sample.memoryWorkingSetBytes;
  return {
    timestamp: rfc3339(),
    uptime_seconds: Math.round(uptime * 1000) / 1000,
    total_executions: stats.executionsTotal,
    active_executions: stats.activeExecutions,
    executions_by_kind: stats.executionsByKind,
    requests_total: stats.requestsTotal,
    total_requests: stats.requestsTotal,
    error_count: stats.errorsTotal,
    total_errors: stats.errorsTotal,
    avg_duration_ms: stats.avgDurationMs,
    p95_duration_ms: stats.p95DurationMs,
    active_streams: stats.activeStreams,
    total_streams: stats.streamsTotal,
    background_processes: deps.jobs.list().filter((p) => p.status === 'running').length,
    system: {
      source: sample.source,
      cpu: {
        usage_percent: sample.cpuUsagePercent,
        cores: Math.round(sample.cpuLimitCores * 100) / 100,
        usage_seconds_total: sample.cpuUsageNs === null ? null : sample.cpuUsageNs / 1e9,
      },
      memory: {
        total: sample.memoryLimitBytes,
        used: memUsed,
        free: Math.max(0, sample.memoryLimitBytes - memUsed),
        usage_percent: percent(memUsed, sample.memoryLimitBytes),
        usage_bytes: sample.memoryUsageBytes,
        working_set_bytes: sample.memoryWorkingSetBytes,
        limit_bytes: sample.memoryLimitBytes,
      },
      disk: { ...sample.disk, usage_percent: percent(sample.disk.used, sample.disk.total) },
      pids: { current: sample.pidsCurrent, max: sample.pidsMax },
      load_average: sample.loadAverage,
      uptime: Math.round(systemUptime),
    },
    process: { count: sample.processCount, running: sample.runningProcesses },
    agent: {
      pid: process.pid,
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
      heap_total_bytes: mem.heapTotal,
      external_bytes: mem.external,
      cpu_seconds: (cpu.user + cpu.system) / 1e6,
    },
    kernel: {
      available: deps.kernel.available ?? null,
      state: deps.kernel.state,
      execution_count: deps.kernel.sessions()[0]?.execution_count ?? 0,
    },
    cache: { size: 0, hits: 0, misses: 0, hit_rate: 0, enabled: false },
  };
}

type Metric = { name: string; help: string; type: 'gauge' | 'counter'; value: number | null | undefined };

/** The Prometheus text exposition format (version 0.0.4) of a snapshot. */
export function prometheusText(snapshot: Record<string, unknown>): string {
  const s = snapshot as {
    uptime_seconds: number;
    requests_total: number;
    total_errors: number;
    total_executions: number;
    active_executions: number;
    active_streams: number;
    background_processes: number;
    system: {
      cpu: { usage_percent: number; cores: number; usage_seconds_total: number | null };
      memory: { usage_bytes: number; working_set_bytes: number; limit_bytes: number };
      disk: { total: number; used: number };
      pids: { current: number | null; max: number | null };
    };
    process: { count: number };
    agent: { rss_bytes: number; heap_used_bytes: number; cpu_seconds: number };
  };
  const metrics: Metric[] = [
    {
      name: 'warren_agent_uptime_seconds',
      help: 'Seconds since the agent started.',
      type: 'gauge',
      value: s.uptime_seconds,
    },
    { name: 'warren_agent_requests_total', help: 'HTTP requests answered.', type: 'counter', value: s.requests_total },
    {
      name: 'warren_agent_errors_total',
      help: 'HTTP requests answered with 4xx or 5xx.',
      type: 'counter',
      value: s.total_errors,
    },
    {
      name: 'warren_agent_executions_total',
      help: 'Executions started (code, commands, background, streams, terminals).',
      type: 'counter',
      value: s.total_executions,
    },
    {
      name: 'warren_agent_active_executions',
      help: 'Executions running now.',
      type: 'gauge',
      value: s.active_executions,
    },
    {
      name: 'warren_agent_active_streams',
      help: 'Open WebSocket streams and tunnels.',
      type: 'gauge',
      value: s.active_streams,
    },
    {
      name: 'warren_agent_background_processes',
      help: 'Background processes running.',
      type: 'gauge',
      value: s.background_processes,
    },
    {
      name: 'warren_agent_rss_bytes',
      help: 'Resident memory of the agent process.',
      type: 'gauge',
      value: s.agent.rss_bytes,
    },
    {
      name: 'warren_agent_heap_used_bytes',
      help: 'V8 heap used by the agent.',
      type: 'gauge',
      value: s.agent.heap_used_bytes,
    },
    {
      name: 'warren_agent_cpu_seconds_total',
      help: 'CPU time used by the agent process.',
      type: 'counter',
      value: s.agent.cpu_seconds,
    },
    {
      name: 'warren_sandbox_cpu_usage_seconds_total',
      help: 'CPU time used by every process of the sandbox.',
      type: 'counter',
      value: s.system.cpu.usage_seconds_total,
    },
    {
      name: 'warren_sandbox_cpu_usage_percent',
      help: 'CPU use of the sandbox as a share of its CPU limit.',
      type: 'gauge',
      value: s.system.cpu.usage_percent,
    },
    {
      name: 'warren_sandbox_cpu_limit_cores',
      help: 'CPUs the sandbox may use.',
      type: 'gauge',
      value: s.system.cpu.cores,
    },
    {
      name: 'warren_sandbox_memory_usage_bytes',
      help: 'Memory charged to the sandbox, page cache included.',
      type: 'gauge',
      value: s.system.memory.usage_bytes,
    },
    {
      name: 'warren_sandbox_memory_working_set_bytes',
      help: 'Memory charged to the sandbox minus inactive page cache.',
      type: 'gauge',
      value: s.system.memory.working_set_bytes,
    },
    {
      name: 'warren_sandbox_memory_limit_bytes',
      help: 'Memory limit of the sandbox.',
      type: 'gauge',
      value: s.system.memory.limit_bytes,
    },
    {
      name: 'warren_sandbox_pids_current',
      help: 'Processes and threads in the sandbox.',
      type: 'gauge',
      value: s.system.pids.current,
    },
    {
      name: 'warren_sandbox_pids_max',
      help: 'Limit on processes and threads in the sandbox.',
      type: 'gauge',
      value: s.system.pids.max,
    },
    {
      name: 'warren_sandbox_processes',
      help: 'Processes visible in the sandbox.',
      type: 'gauge',
      value: s.process.count,
    },
    {
      name: 'warren_sandbox_disk_total_bytes',
      help: 'Size of the root filesystem.',
      type: 'gauge',
      value: s.system.disk.total,
    },
    {
      name: 'warren_sandbox_disk_used_bytes',
      help: 'Bytes used on the root filesystem.',
      type: 'gauge',
      value: s.system.disk.used,
    },
  ];
  const lines: string[] = [];
  for (const m of metrics) {
    if (m.value === null || m.value === undefined || !Number.isFinite(m.value)) continue;
    lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, `${m.name} ${m.value}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Metrics (`/metrics/snapshot`, `/metrics`, `/metrics/prometheus`), `/system`,
 * `/ping`, `/`, and the result cache routes (PROTOCOL §8.6). The agent does
 * not cache results, so the cache is always empty.
 */
export function metricsRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get('/metrics/snapshot', async (c) => c.json(await metricsSnapshot(deps)));
  app.get('/metrics', async (c) => c.json(await metricsSnapshot(deps)));
  app.get('/metrics/prometheus', async (c) => {
    c.header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8');
    return c.body(prometheusText(await metricsSnapshot(deps)));
  });

  app.get('/system', async (c) => {
    const [usage, uptime, boot] = await Promise.all([deps.metrics.usage(), systemUptimeSeconds(), bootTimeMs()]);
    return c.json({
      hostname: hostname(),
      os: platform(),
      platform: platform(),
      arch: arch(),
      kernel_version: release(),
      cpu_cores: Math.round(usage.cpuLimitCores * 100) / 100,
      memory_total: usage.memoryLimitBytes,
      memory_used: usage.memoryWorkingSetBytes,
      uptime_seconds: Math.round(uptime),
      boot_time: rfc3339(boot),
      node_version: process.version,
      agent: AGENT_NAME,
      agent_version: AGENT_VERSION,
      sandbox_id: deps.config.sandboxId,
      metrics_source: usage.source,
      timestamp: rfc3339(),
    });
  });

  app.get('/ping', (c) => c.json({ status: 'ok', message: 'pong', timestamp: rfc3339() }));
  app.get('/', (c) =>
    c.json({
      agent: AGENT_NAME,
      version: AGENT_VERSION,
      sandbox_id: deps.config.sandboxId,
      status: 'running',
      endpoints: ENDPOINTS,
      timestamp: rfc3339(),
    }),
  );

  app.get('/cache/stats', (c) =>
    c.json({
      cache: { size: 0, max_size: 0, total_hits: 0, ttl: '0s', enabled: false },
      size: 0,
      hits: 0,
      misses: 0,
      hit_rate: 0,
      enabled: false,
      timestamp: rfc3339(),
    }),
  );
  app.post('/cache/clear', (c) => c.json({ message: 'Cache cleared', entries_removed: 0, timestamp: rfc3339() }));
  return app;
}
