import { backgroundExecuteRequestSchema, executeRequestSchema, ipythonRequestSchema } from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import type { AppEnv } from '../http/app-env.ts';
import { readJson, warmUpJsonBody } from '../http/body.ts';

/** A request like the SDK's `runCode`, parsed once to warm the schemas up. */
const WARM_UP_REQUEST = { code: 'print(1)', language: 'python', timeout: 120, workdir: '/workspace' };

/**
 * `POST /execute` and `POST /execute/ipython` (python in the sandbox's Jupyter
 * kernel when it has one, so state persists), `POST /execute/background`
 * (PROTOCOL §8.2). `POST /execute/async` is answered by the server, not here.
 */
export function executeRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // zod compiles a schema on its first parse, and the first body read compiles the agent's body path
  // (milliseconds together): pay that after boot's kernel warm-up, not in the first run.
  void deps.kernel.whenWarm().then(async () => {
    await warmUpJsonBody(executeRequestSchema, WARM_UP_REQUEST, deps.config.maxBodyBytes).catch(() => undefined);
    ipythonRequestSchema.safeParse(WARM_UP_REQUEST);
  });
  // A client that disconnects (e.g. the SDK's `signal`) stops its run: the kernel is interrupted, a process killed.
  app.post('/execute', async (c) => {
    const params = await readJson(c, executeRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.executor.execute(params, c.req.raw.signal));
  });
  app.post('/execute/ipython', async (c) => {
    const params = await readJson(c, ipythonRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.executor.execute(params, c.req.raw.signal));
  });
  app.post('/execute/background', async (c) => {
    const params = await readJson(c, backgroundExecuteRequestSchema, deps.config.maxBodyBytes);
    return c.json(await deps.jobs.startCode(params));
  });
  return app;
}
