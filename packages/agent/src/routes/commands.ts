import { backgroundCommandRequestSchema, commandRequestSchema } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { readJson } from '../http/body.ts';

/** `POST /commands/run` and `POST /commands/background` (PROTOCOL §8.3). */
export function commandRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post('/commands/run', async (c) => {
    const params = await readJson(c, commandRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.commands.run(params));
  });
  app.post('/commands/background', async (c) => {
    const params = await readJson(c, backgroundCommandRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.jobs.startCommand(params));
  });
  return app;
}
