import { rfc3339 } from '@warren/protocol';
import { Hono } from 'hono';
import { z } from 'zod';
import { authenticate } from '../services/auth.ts';
import { PREVIEW_TOKEN_MAX_TTL_SECONDS, type PreviewService } from '../services/previews.ts';
import type { SandboxService } from '../services/sandboxes.ts';
import type { ApiKeyRow, Store } from '../store/store.ts';
import { jsonBody, parse } from './control.ts';

export interface PreviewRouteDeps {
  store: Store;
  sandboxes: SandboxService;
  previews: PreviewService;
}

type Env = { Variables: { requestId: string; apiKey: ApiKeyRow } };

const previewTokenBody = z.object({
  port: z.number().int().min(1).max(65_535),
  ttl_seconds: z.number().int().min(60).max(PREVIEW_TOKEN_MAX_TTL_SECONDS).default(3600),
});

/**
 * `POST /v1/sandboxes/{id}/preview-token {port, ttl_seconds?}` →
 * `{sandbox_id, port, token, url, path_url, host_url, expires_at}`: a signed
 * token a browser can open a sandbox port with (`?warren_preview_token=`).
 */
export function previewRoutes(deps: PreviewRouteDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.use('*', async (c, next) => {
    c.set(
      'apiKey',
      authenticate(deps.store, { apiKey: c.req.header('x-api-key'), authorization: c.req.header('authorization') }),
    );
    await next();
  });

  app.post('/sandboxes/:id/preview-token', async (c) => {
    const row = deps.sandboxes.get(c.get('apiKey'), c.req.param('id'));
    const body = parse(previewTokenBody, await jsonBody(c));
    const { token, expiresAt } = deps.previews.issue(row.id, body.port, body.ttl_seconds);
    const { pathURL, hostURL } = deps.previews.urls(row.id, body.port, token);
    return c.json({
      sandbox_id: row.id,
      port: body.port,
      token,
      url: hostURL ?? pathURL,
      path_url: pathURL,
      host_url: hostURL ?? null,
      expires_at: rfc3339(expiresAt),
      request_id: c.get('requestId'),
    });
  });

  return app;
}
