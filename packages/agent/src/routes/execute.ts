import { executeRequestSchema } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { readJson } from '../http/body.ts';

/** `POST /execute`: run code synchronously (PROTOCOL §8.2). */
export function executeRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post('/execute', async (c) => {
    const params = await readJson(c, executeRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.executor.execute(params));
  });
  return app;
}
