import { arch, platform } from 'node:os';
import { executeLanguages, type HealthResponse, rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { AGENT_NAME, AGENT_VERSION } from '../version.ts';

/** What this agent build supports, as `/health` and `/info` report it. */
export const FEATURES = Object.freeze({
  code_execution: true,
  file_operations: true,
  environment_variables: true,
  terminal_access: false,
  websocket_streaming: false,
  rich_output: false,
  background_jobs: false,
  ipython_kernel: false,
  system_metrics: false,
  languages: [...executeLanguages],
});

/** Endpoints this agent serves, as `/info` reports them. */
const ENDPOINTS = Object.freeze({
  health: 'GET /health',
  info: 'GET /info',
  execute: 'POST /execute',
  commands_run: 'POST /commands/run',
  files_read: 'GET /files/read',
  files_download: 'GET /files/download',
  files_write: 'POST /files/write',
  files_list: 'GET /files/list',
  files_exists: 'GET /files/exists',
  files_remove: 'DELETE /files/remove',
  files_mkdir: 'POST /files/mkdir',
  files_upload: 'POST /files/upload',
  env_get: 'GET /env',
  env_set: 'PUT /env',
  env_merge: 'PATCH /env',
  env_clear: 'DELETE /env',
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
      features: FEATURES,
      active_streams: 0,
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
      features: FEATURES,
      timestamp: rfc3339(),
    });
  });

  return app;
}
