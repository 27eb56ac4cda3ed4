import { killRequestSchema, type ProcessListResponse, rfc3339, type SystemProcess } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppContext, AppEnv } from '../http/app-env.ts';
import { readJson } from '../http/body.ts';
import {
  bootTimeMs,
  CLOCK_TICKS_PER_SECOND,
  listProcEntries,
  systemUptimeSeconds,
  userNames,
} from '../services/proc-fs.ts';

/** Every process of the sandbox, from /proc (PROTOCOL §8.1 `GET /processes`). */
export async function systemProcesses(): Promise<SystemProcess[]> {
  const [entries, names, uptime, boot] = await Promise.all([
    listProcEntries(),
    userNames(),
    systemUptimeSeconds(),
    bootTimeMs(),
  ]);
  return entries.map((p) => {
    const startedSeconds = p.startTicks / CLOCK_TICKS_PER_SECOND;
    const elapsed = Math.max(uptime - startedSeconds, 0.01);
    const cpuSeconds = (p.utimeTicks + p.stimeTicks) / CLOCK_TICKS_PER_SECOND;
    return {
      pid: p.pid,
      ppid: p.ppid,
      pgid: p.pgrp,
      name: p.comm,
      status: p.state,
      cpu_percent: Math.round((cpuSeconds / elapsed) * 1000) / 10,
      memory_mb: Math.round((p.rssBytes / 1024 / 1024) * 100) / 100,
      memory_bytes: p.rssBytes,
      threads: p.threads,
      command: p.command,
      user: names.get(p.uid) ?? String(p.uid),
      uid: p.uid,
      start_time: rfc3339(boot + startedSeconds * 1000),
    };
  });
}

/**
 * Background processes (`GET /execute/processes`, PROTOCOL §10) and their kill
 * routes in all the forms the SDKs and specs use; `GET /processes` lists every
 * process of the sandbox.
 */
export function processRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  /** The id from `?process_id=`, else from a `{process_id}` body. */
  const idFromRequest = async (c: AppContext): Promise<string> => {
    const fromQuery = new URL(c.req.url).searchParams.get('process_id');
    if (fromQuery) return fromQuery;
    return (await readJson(c, killRequestSchema, deps.config.maxBodyBytes)).process_id;
  };

  app.get('/execute/processes', (c) => {
    const processes = deps.jobs.list();
    const body: ProcessListResponse = { processes, count: processes.length, timestamp: rfc3339() };
    return c.json(body);
  });
  app.get('/execute/processes/:id', (c) => c.json(deps.jobs.get(c.req.param('id'))));
  app.post('/execute/kill/:id', async (c) => c.json(await deps.jobs.kill(c.req.param('id'))));
  app.post('/processes/:id/kill', async (c) => c.json(await deps.jobs.kill(c.req.param('id'))));
  app.on(['POST', 'DELETE'], '/execute/kill', async (c) => c.json(await deps.jobs.kill(await idFromRequest(c))));

  app.get('/processes', async (c) => {
    const processes = await systemProcesses();
    return c.json({ processes, count: processes.length, timestamp: rfc3339() });
  });
  return app;
}
