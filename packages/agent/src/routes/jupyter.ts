import { rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';

/**
 * `GET /jupyter/sessions` and its newer name `GET /jupyter/status`: the
 * sandbox's kernel (PROTOCOL §8.1). No sessions when the template has no
 * ipykernel.
 */
export function jupyterRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const body = () => {
    const sessions = deps.kernel.sessions();
    return {
      sessions,
      count: sessions.length,
      available: deps.kernel.available ?? null,
      state: deps.kernel.state,
      versions: deps.kernel.versions,
      timestamp: rfc3339(),
    };
  };
  app.get('/jupyter/sessions', (c) => c.json(body()));
  app.get('/jupyter/status', (c) => c.json(body()));
  return app;
}
