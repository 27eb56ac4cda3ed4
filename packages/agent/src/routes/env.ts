import { type EnvResponse, envUpdateRequestSchema, rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { readJson } from '../http/body.ts';

/** `/env`: the sandbox's global environment (PROTOCOL §8.5). Values are never masked. */
export function envRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { envStore } = deps;
  const snapshot = (vars = envStore.all()): EnvResponse => ({
    env_vars: vars,
    count: Object.keys(vars).length,
    timestamp: rfc3339(),
  });

  app.get('/env', (c) => c.json(snapshot()));
  app.put('/env', async (c) => {
    const { envVars } = await readJson(c, envUpdateRequestSchema, deps.config.maxBodyBytes);
    return c.json(snapshot(envStore.replace(envVars)));
  });
  app.patch('/env', async (c) => {
    const { envVars } = await readJson(c, envUpdateRequestSchema, deps.config.maxBodyBytes);
    return c.json(snapshot(envStore.merge(envVars)));
  });
  app.delete('/env', (c) => {
    envStore.clear();
    return c.json({ message: 'cleared', timestamp: rfc3339() });
  });
  return app;
}
