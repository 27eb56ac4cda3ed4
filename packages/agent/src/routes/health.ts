import { arch, platform } from 'node:os';
import { executeLanguages, type HealthResponse, rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { AGENT_NAME, AGENT_VERSION } from '../version.ts';

/** What this agent supports right now, as `/health` and `/info` report it. */
export function features(deps: AgentDeps): Record<string, unknown> {
  const kernel = deps.kernel.available === true;
  return {
    code_execution: true,
    file_operations: true,
    environment_variables: true,
    terminal_access: true,
    websocket_streaming: true,
    file_watching: true,
    rich_output: kernel,
    background_jobs: true,
    ipython_kernel: kernel,
    python_executor: kernel ? 'jupyter-kernel' : 'process',
    // null while the agent is still finding out whether the template has ipykernel.
    kernel_available: deps.kernel.available ?? null,
    kernel_state: deps.kernel.state,
    // The template's start command: none, starting, ready or failed (the server waits for ready).
    start_command: deps.startCommand.state,
    start_command_error: deps.startCommand.error,
    system_metrics: true,
    port_tunnel: true,
    result_cache: false,
    desktop: false,
    languages: [...executeLanguages],
  };
}

/** Endpoints this agent serves, as `/info` and `/` report them. */
export const ENDPOINTS = Object.freeze({
  root: 'GET /',
  health: 'GET /health',
  info: 'GET /info',
  ping: 'GET /ping',
  system: 'GET /system',
  metrics: 'GET /metrics',
  metrics_snapshot: 'GET /metrics/snapshot',
  metrics_prometheus: 'GET /metrics/prometheus',
  execute: 'POST /execute',
  execute_ipython: 'POST /execute/ipython',
  execute_background: 'POST /execute/background',
  execute_processes: 'GET /execute/processes',
  execute_kill: 'POST /execute/kill/{process_id}',
  execute_kill_body: 'POST|DELETE /execute/kill',
  execute_stream: 'WS /execute/stream',
  commands_run: 'POST /commands/run',
  commands_background: 'POST /commands/background',
  commands_stream: 'WS /commands/stream',
  processes: 'GET /processes',
  processes_kill: 'POST /processes/{process_id}/kill',
  jupyter_sessions: 'GET /jupyter/sessions',
  jupyter_status: 'GET /jupyter/status',
  terminal: 'WS /terminal',
  files_read: 'GET /files/read',
  files_download: 'GET /files/download',
  files_write: 'POST /files/write',
  files_list: 'GET /files/list',
  files_exists: 'GET /files/exists',
  files_remove: 'DELETE /files/remove',
  files_mkdir: 'POST /files/mkdir',
  files_upload: 'POST /files/upload',
  files_watch: 'WS /files/watch',
  env_get: 'GET /env',
  env_set: 'PUT /env',
  env_merge: 'PATCH /env',
  env_clear: 'DELETE /env',
  cache_stats: 'GET /cache/stats',
  cache_clear: 'POST /cache/clear',
  port_tunnel: 'GET /_warren/tunnel?port={port} (Upgrade: warren-tunnel)',
});

/** Go-style duration, e.g. `2h3m4s`. */
export function formatUptime(totalSeconds: number): string {
  const s = Math.floor(totalSeconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${rest}s`;
}

/** `GET /health` (unauthenticated) and `GET /info`. */
export function healthRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const uptimeSeconds = () => Math.floor((Date.now() - deps.startedAt.getTime()) / 1000);

  app.get('/health', (c) => {
    const uptime = uptimeSeconds();
    const body: HealthResponse = {
      status: 'healthy',
      agent: AGENT_NAME,
      version: AGENT_VERSION,
      uptime: formatUptime(uptime),
      uptime_seconds: uptime,
      vm_id: deps.config.sandboxId,
      sandbox_id: deps.config.sandboxId,
      node_version: process.version,
      features: features(deps),
      active_streams: deps.stats.activeStreams,
      timestamp: rfc3339(),
    };
    return c.json(body);
  });

  app.get('/info', (c) => {
    const uptime = uptimeSeconds();
    const { listen } = deps.config;
    return c.json({
      vm_id: deps.config.sandboxId,
      sandbox_id: deps.config.sandboxId,
      agent: AGENT_NAME,
      agent_version: AGENT_VERSION,
      version: AGENT_VERSION,
      os: platform(),
      platform: platform(),
      arch: arch(),
      node_version: process.version,
      vm_port: listen.kind === 'tcp' ? listen.port : null,
      socket: listen.kind === 'socket' ? listen.path : null,
      start_time: rfc3339(deps.startedAt),
      uptime: formatUptime(uptime),
      uptime_seconds: uptime,
      workdir: deps.config.workdir,
      file_roots: deps.config.fileRoots,
      endpoints: ENDPOINTS,
      features: features(deps),
      timestamp: rfc3339(),
    });
  });

  return app;
}
