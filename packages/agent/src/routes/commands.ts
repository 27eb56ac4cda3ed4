import { backgroundCommandRequestSchema, commandRequestSchema } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { readJson } from '../http/body.ts';

/** A request like the SDK's `commands.run`, parsed once to build and warm its schema up. */
const WARM_UP_REQUEST = { command: 'true', timeout: 60, workdir: '/workspace' };

/** `POST /commands/run` and `POST /commands/background` (PROTOCOL §8.3). */
export function commandRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // Schemas are built on first use (lazySchema in @warren/protocol) and compiled by zod on their first
  // parse: pay that after boot's kernel warm-up, as /execute does, not in the first command.
  void deps.kernel.whenWarm().then(() => commandRequestSchema.safeParse(WARM_UP_REQUEST));
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
