import { randomBytes } from 'node:crypto';
import { controlErrorBody, ErrorCode, rfc3339, ServiceError } from '@warren/protocol';
import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { type ControlDeps, controlRoutes, nodeRequest } from './routes/control.ts';
import { keyRoutes } from './routes/keys.ts';
import { previewRoutes } from './routes/previews.ts';
import { templateBuildRoutes, uploadRoutes } from './routes/template-builds.ts';
import type { PreviewService } from './services/previews.ts';
import type { Logger } from './services/sandboxes.ts';
import type { TemplateBuildService } from './services/template-builds.ts';

export const VERSION = '0.1.0';
const startedAt = Date.now();

/** A request id: `req_` + 16 hex digits. */
export function newRequestId(): string {
  return `req_${randomBytes(8).toString('hex')}`;
}

/** Turns any thrown value into the control-plane error envelope; never a stack trace. */
export function errorResponse(err: unknown, requestId: string, log: Logger): Response {
  const se = err instanceof ServiceError ? err : new ServiceError(ErrorCode.INTERNAL_ERROR, 'Internal server error');
  if (!(err instanceof ServiceError))
    log.error(`unhandled error (${requestId}): ${(err as Error)?.stack ?? String(err)}`);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId };
  // The rest of an oversized body is never read: the connection cannot carry another request.
  if (se.code === ErrorCode.PAYLOAD_TOO_LARGE) headers.connection = 'close';
  return new Response(JSON.stringify(controlErrorBody(se, requestId)), { status: se.status, headers });
}

/**
 * 413 for a request body over `maxBytes`. A request Node serves with a
 * declared length (or no body at all) is judged by its headers alone: Hono's
 * `bodyLimit` asks the web `Request` for its body, which makes
 * `@hono/node-server` build a full `Request` and body stream for every call,
 * a GET or DELETE included (about a quarter of a millisecond each in a CPU
 * profile of a 100-way burst). A chunked body, or a request not from Node
 * (`app.request()` in tests), is counted by Hono's `bodyLimit` as it is read.
 */
function controlBodyLimit(maxBytes: number): MiddlewareHandler {
  const tooLarge = () => {
    throw new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, `Request body exceeds ${maxBytes} bytes`);
  };
  const counted = bodyLimit({ maxSize: maxBytes, onError: tooLarge });
  return (c, next) => {
    const incoming = nodeRequest(c);
    if (incoming === undefined || incoming.headers['transfer-encoding'] !== undefined) return counted(c, next);
    // HTTP/1.1: without Transfer-Encoding, Content-Length is the body's whole size (none: no body).
    if (Number(incoming.headers['content-length'] ?? 0) > maxBytes) tooLarge();
    return next();
  };
}

/** The control-plane Hono app: /health and the Hopx public API under /v1. */
export type AppEnv = { Variables: { requestId: string } };

export function createApp(
  deps: ControlDeps & {
    log: Logger;
    maxBodyBytes: number;
    previews?: PreviewService;
    templateBuilds?: TemplateBuildService;
  },
): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', async (c, next) => {
    const requestId = newRequestId();
    c.set('requestId', requestId);
    await next();
    c.res.headers.set('x-request-id', requestId);
  });
  // Build-context uploads: their own credential (the signed link) and size limit, so before the API key and body limit.
  if (deps.templateBuilds) app.route('/v1', uploadRoutes({ store: deps.store, builds: deps.templateBuilds }));
  app.use('*', controlBodyLimit(deps.maxBodyBytes));

  app.get('/health', (c) =>
    c.json({
      status: 'healthy',
      service: 'warren',
      version: VERSION,
      uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
      timestamp: rfc3339(),
    }),
  );

  app.route('/v1', controlRoutes(deps));
  app.route('/v1', keyRoutes({ store: deps.store }));
  if (deps.previews) app.route('/v1', previewRoutes({ ...deps, previews: deps.previews }));
  if (deps.templateBuilds) app.route('/v1', templateBuildRoutes({ store: deps.store, builds: deps.templateBuilds }));

  app.notFound((c) => {
    throw new ServiceError(ErrorCode.NOT_FOUND, `No route for ${c.req.method} ${c.req.path}`);
  });
  app.onError((err, c) => errorResponse(err, c.get('requestId') ?? newRequestId(), deps.log));
  return app;
}
