import type { IncomingMessage } from 'node:http';
import { ErrorCode, rfc3339, ServiceError } from '@warren/protocol';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { readBody } from '../internal/proxy-http.ts';
import { authenticate } from '../services/auth.ts';
import type { SandboxService } from '../services/sandboxes.ts';
import type { ApiKeyRow, SandboxRow, Store } from '../store/store.ts';
import { sandboxView, templateView } from './views.ts';

export interface ControlDeps {
  store: Store;
  sandboxes: SandboxService;
  publicHost: () => string;
  /** Largest page the sandbox list returns. */
  listPageMax: number;
}

type Env = { Variables: { requestId: string; apiKey: ApiKeyRow } };

const createBody = z.object({
  template_name: z.string().min(1).max(200).optional(),
  template_id: z.union([z.string().min(1).max(200), z.number().int().nonnegative()]).optional(),
  region: z.string().max(100).optional(),
  timeout_seconds: z
    .number()
    .int()
    .positive()
    .max(30 * 86_400)
    .optional(),
  internet_access: z.boolean().optional(),
  env_vars: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'invalid env var name'), z.string()).optional(),
  metadata: z
    .record(z.string().min(1).max(64), z.string().max(512))
    .refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata entries')
    .optional(),
  vcpu: z.number().int().positive().optional(),
  memory_mb: z.number().int().positive().optional(),
  disk_gb: z.number().int().positive().optional(),
});

const timeoutBody = z.object({
  timeout_seconds: z
    .number()
    .int()
    .positive()
    .max(30 * 86_400),
});

const listQuery = z.object({
  status: z.enum(['creating', 'running', 'paused', 'stopped', 'error']).optional(),
  region: z.string().max(100).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(100).optional(),
});

const templatesQuery = z.object({
  category: z.string().max(100).optional(),
  language: z.string().max(100).optional(),
});

/** Parses with zod; failures become 400 INVALID_REQUEST naming the field. */
export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue?.path.join('.') || 'body';
  throw new ServiceError(ErrorCode.INVALID_REQUEST, `Invalid ${field}: ${issue?.message ?? 'invalid'}`, {
    details: { field, issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
  });
}

/** Node's request behind a context on `@hono/node-server`; undefined in-process (`app.request()`). */
export function nodeRequest(c: Context): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

/**
 * Reads a request's JSON body (an empty body is `{}`). Served by Node with a
 * Content-Length (already checked by the body limit), it is read straight
 * from Node's request: building the web `Request` body stream costs about a
 * millisecond per call. Anything else goes through `c.req.raw`.
 * @throws ServiceError INVALID_JSON.
 */
export async function jsonBody(c: Context): Promise<unknown> {
  const incoming = nodeRequest(c);
  const text =
    incoming !== undefined &&
    incoming.headers['content-length'] !== undefined &&
    incoming.headers['transfer-encoding'] === undefined &&
    !incoming.readableDidRead
      ? await readNodeBody(incoming)
      : await c.req.raw.text();
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ServiceError(ErrorCode.INVALID_JSON, 'Request body is not valid JSON');
  }
}

/** The body of a request whose size the gateway already checked. @throws Error when the request fails mid-body. */
async function readNodeBody(incoming: IncomingMessage): Promise<string> {
  const body = await readBody(incoming, Number.POSITIVE_INFINITY);
  if (body === undefined) throw new Error('the request body could not be read');
  return body.toString('utf8');
}

function encodeCursor(seq: number): string {
  return Buffer.from(`seq:${seq}`).toString('base64url');
}

function decodeCursor(cursor: string): number {
  const m = /^seq:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid cursor');
  return Number(m[1]);
}

/** Hopx public API routes under /v1 (PROTOCOL §5). */
export function controlRoutes(deps: ControlDeps): Hono<Env> {
  const { store, sandboxes } = deps;
  const app = new Hono<Env>();

  app.use('*', async (c, next) => {
    c.set(
      'apiKey',
      authenticate(store, { apiKey: c.req.header('x-api-key'), authorization: c.req.header('authorization') }),
    );
    await next();
  });

  /** The wire view of a row the handler has just read (or had returned) from the store. */
  const view = (row: SandboxRow) => sandboxView(row, store.findTemplate(row.templateId), deps.publicHost());

  app.post('/sandboxes', async (c) => {
    const body = parse(createBody, await jsonBody(c));
    const created = await sandboxes.create(c.get('apiKey'), {
      templateName: body.template_name,
      templateId: body.template_id === undefined ? undefined : String(body.template_id),
      region: body.region,
      timeoutSeconds: body.timeout_seconds,
      internetAccess: body.internet_access,
      envVars: body.env_vars,
      metadata: body.metadata,
    });
    return c.json(
      {
        ...view(created.sandbox),
        auth_token: created.token,
        token_expires_at: rfc3339(created.tokenExpiresAt),
        request_id: c.get('requestId'),
      },
      201,
    );
  });

  app.get('/sandboxes', (c) => {
    const q = parse(listQuery, c.req.query());
    const limit = Math.min(q.limit, deps.listPageMax);
    const rows = store.listSandboxes({
      apiKeyId: c.get('apiKey').id,
      ...(q.status === undefined ? {} : { status: q.status }),
      ...(q.region === undefined ? {} : { region: q.region }),
      ...(q.cursor === undefined ? {} : { beforeSeq: decodeCursor(q.cursor) }),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const hasMore = rows.length > limit;
    const last = page.at(-1);
    return c.json({
      object: 'list',
      data: page.map((r) => sandboxView(r, store.findTemplate(r.templateId), deps.publicHost())),
      has_more: hasMore,
      next_cursor: hasMore && last ? encodeCursor(last.seq) : null,
      url: '/v1/sandboxes',
      request_id: c.get('requestId'),
    });
  });

  app.get('/sandboxes/:id', (c) => {
    const row = sandboxes.get(c.get('apiKey'), c.req.param('id'));
    return c.json({ ...view(row), request_id: c.get('requestId') });
  });

  app.delete('/sandboxes/:id', async (c) => {
    const row = sandboxes.get(c.get('apiKey'), c.req.param('id'));
    // Answered once its processes are killed; the container, network and files go right after, in the background.
    await sandboxes.delete(row.id, { untilGone: false });
    return c.json({ id: row.id, object: 'sandbox', status: 'deleted', deleted: true, request_id: c.get('requestId') });
  });

  const lifecycle = (action: 'pause' | 'resume' | 'stop' | 'start') =>
    app.post(`/sandboxes/:id/${action}`, async (c) => {
      const row = await sandboxes[action](c.get('apiKey'), c.req.param('id'));
      return c.json({ ...view(row), request_id: c.get('requestId') });
    });
  lifecycle('pause');
  lifecycle('resume');
  lifecycle('stop');
  lifecycle('start');

  app.put('/sandboxes/:id/timeout', async (c) => {
    const body = parse(timeoutBody, await jsonBody(c));
    const row = sandboxes.setTimeout(c.get('apiKey'), c.req.param('id'), body.timeout_seconds);
    return c.json({
      id: row.id,
      timeout_seconds: row.timeoutSeconds,
      expires_at: row.expiresAt === null ? null : rfc3339(row.expiresAt),
      request_id: c.get('requestId'),
    });
  });

  app.post('/sandboxes/:id/token/refresh', (c) => {
    const r = sandboxes.refreshToken(c.get('apiKey'), c.req.param('id'));
    return c.json({
      id: r.sandbox.id,
      auth_token: r.token,
      token_expires_at: rfc3339(r.tokenExpiresAt),
      request_id: c.get('requestId'),
    });
  });

  app.get('/templates', (c) => {
    const q = parse(templatesQuery, c.req.query());
    const filter = {
      ...(q.category === undefined ? {} : { category: q.category }),
      ...(q.language === undefined ? {} : { language: q.language }),
    };
    return c.json({
      object: 'list',
      data: store.listTemplates(filter).map(templateView),
      has_more: false,
      url: '/v1/templates',
      request_id: c.get('requestId'),
    });
  });

  app.get('/templates/:ref', (c) => {
    const t = store.findTemplate(c.req.param('ref'));
    if (!t) throw new ServiceError(ErrorCode.TEMPLATE_NOT_FOUND, `Template not found: ${c.req.param('ref')}`);
    return c.json({ ...templateView(t), request_id: c.get('requestId') });
  });

  return app;
}
