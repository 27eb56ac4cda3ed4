import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import {
  BuildRequestError,
  buildRequestSchema,
  ErrorCode,
  filesHashSchema,
  normalizeBuildRequest,
  ServiceError,
  uploadLinkRequestSchema,
} from '@warren/protocol';
import { Hono } from 'hono';
import { z } from 'zod';
import { authenticate } from '../services/auth.ts';
import type { TemplateBuildService } from '../services/template-builds.ts';
import type { ApiKeyRow, Store } from '../store/store.ts';
import { jsonBody, parse } from './control.ts';

export interface TemplateBuildDeps {
  store: Store;
  builds: TemplateBuildService;
}

type Env = { Variables: { requestId: string; apiKey: ApiKeyRow } };

const idParam = z.string().regex(/^\d{1,12}$/, 'not a template id');
const logsQuery = z.object({ offset: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0) });

/**
 * `PUT /v1/templates/files/upload/{hash}`: the upload link. It carries its own
 * signed credential (the SDKs send no API key), so it is mounted before the
 * API-key routes and before the general body limit (uploads have their own).
 */
export function uploadRoutes(deps: TemplateBuildDeps): Hono<Env> {
  const app = new Hono<Env>();
  app.put('/templates/files/upload/:hash', async (c) => {
    const hash = parse(filesHashSchema, c.req.param('hash'));
    const length = c.req.header('content-length');
    const body = c.req.raw.body;
    if (!body) throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Upload body is empty');
    await deps.builds.acceptUpload(
      hash,
      { length: c.req.query('length'), expires: c.req.query('expires'), signature: c.req.query('signature') },
      length === undefined ? undefined : Number(length),
      Readable.fromWeb(body as NodeReadableStream<Uint8Array>),
    );
    return c.json({ files_hash: hash, stored: true, request_id: c.get('requestId') });
  });
  return app;
}

/** The template-build API under /v1 (PROTOCOL §5.5–5.6), API-key authenticated. */
export function templateBuildRoutes(deps: TemplateBuildDeps): Hono<Env> {
  const { store, builds } = deps;
  const app = new Hono<Env>();
  for (const path of ['/templates/files/upload-link', '/templates/build', '/templates/build/*', '/templates/:ref']) {
    app.use(path, async (c, next) => {
      c.set(
        'apiKey',
        authenticate(store, { apiKey: c.req.header('x-api-key'), authorization: c.req.header('authorization') }),
      );
      await next();
    });
  }

  app.post('/templates/files/upload-link', async (c) => {
    const b = parse(uploadLinkRequestSchema, await jsonBody(c));
    return c.json({ ...(await builds.uploadLink(b.files_hash, b.content_length)), request_id: c.get('requestId') });
  });

  app.post('/templates/build', async (c) => {
    const raw = parse(buildRequestSchema, await jsonBody(c));
    let req: ReturnType<typeof normalizeBuildRequest>;
    try {
      req = normalizeBuildRequest(raw);
    } catch (err) {
      if (err instanceof BuildRequestError) throw new ServiceError(ErrorCode.INVALID_REQUEST, err.message);
      throw err;
    }
    const row = builds.start(c.get('apiKey'), req);
    // Exactly these keys: the Python SDK builds a dataclass from them (PROTOCOL §5.6).
    return c.json(
      {
        build_id: row.id,
        template_id: row.id,
        status: 'building',
        logs_url: `/v1/templates/build/${row.id}/logs`,
        request_id: c.get('requestId'),
      },
      201,
    );
  });

  app.get('/templates/build/:id/status', (c) => {
    const id = parse(idParam, c.req.param('id'));
    return c.json({ ...builds.status(id), request_id: c.get('requestId') });
  });

  app.get('/templates/build/:id/logs', async (c) => {
    const id = parse(idParam, c.req.param('id'));
    const q = parse(logsQuery, c.req.query());
    return c.json({ ...(await builds.logs(id, q.offset)), request_id: c.get('requestId') });
  });

  app.delete('/templates/:ref', (c) => {
    const ref = c.req.param('ref');
    const t = store.findTemplate(ref);
    if (!t) throw new ServiceError(ErrorCode.TEMPLATE_NOT_FOUND, `Template not found: ${ref}`);
    builds.delete(t.id);
    return c.json({ id: t.id, deleted: true, request_id: c.get('requestId') });
  });

  return app;
}
