import { describe, expect, it } from 'vitest';
import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  FileNotFoundError,
  InternalServerError,
  InvalidResponseError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  TemplateNotFoundError,
} from '../errors.ts';
import { Sandbox } from '../sandbox.ts';
import { backoffMs, type Fetch, HTTPClient, retryAfterMs } from './http.ts';

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

/** A scripted fetch: each call takes the next answer (a Response, an Error to throw, or 'hang'). */
function scripted(answers: Array<Response | Error | 'hang' | (() => Response)>) {
  const calls: Call[] = [];
  const fetch: Fetch = async (input, init) => {
    calls.push({
      url: String(input),
      method: init?.method ?? 'GET',
      headers: Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>)),
      body: typeof init?.body === 'string' ? init.body : undefined,
    });
    const next = answers.shift();
    if (next === undefined) throw new Error('no scripted answer left');
    if (next === 'hang') {
      return new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')), {
          once: true,
        });
      });
    }
    if (next instanceof Error) throw next;
    return typeof next === 'function' ? next() : next;
  };
  return { fetch, calls };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

function client(fetch: Fetch, extra: { maxRetries?: number; timeoutMs?: number } = {}) {
  const sleeps: number[] = [];
  const refreshes: number[] = [];
  let token = 'first';
  const http = new HTTPClient({
    baseURL: 'http://warren.test/',
    auth: {
      headers: () => ({ authorization: `Bearer ${token}` }),
      refresh: async () => {
        refreshes.push(1);
        token = 'second';
      },
    },
    fetch,
    maxRetries: extra.maxRetries,
    timeoutMs: extra.timeoutMs,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  return { http, sleeps, refreshes };
}

const anyObject = { safeParse: (v: unknown) => ({ success: true as const, data: v }) } as never;

describe('HTTPClient retries', () => {
  it('retries an idempotent GET after 503 and a connection error, then succeeds', async () => {
    const { fetch, calls } = scripted([
      json(503, { code: 'SERVICE_UNAVAILABLE' }),
      new TypeError('fetch failed'),
      json(200, { ok: 1 }),
    ]);
    const { http, sleeps } = client(fetch);
    expect(await http.json({ method: 'GET', path: '/v1/x' }, anyObject)).toEqual({ ok: 1 });
    expect(calls).toHaveLength(3);
    expect(calls[0]?.url).toBe('http://warren.test/v1/x');
    // Backoff: 500 ms then 1000 ms, each with up to 25 % jitter below.
    expect(sleeps).toHaveLength(2);
    expect(sleeps[0]).toBeGreaterThanOrEqual(375);
    expect(sleeps[0]).toBeLessThanOrEqual(500);
    expect(sleeps[1]).toBeGreaterThanOrEqual(750);
    expect(sleeps[1]).toBeLessThanOrEqual(1000);
  });

  it('gives up after maxRetries and throws the last error', async () => {
    const { fetch, calls } = scripted([json(500, {}), json(502, {}), json(500, { message: 'still broken' })]);
    const { http } = client(fetch, { maxRetries: 2 });
    const err = await http.json({ method: 'GET', path: '/x' }, anyObject).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(500);
    expect((err as Error).message).toContain('still broken');
    expect(calls).toHaveLength(3);
  });

  it('honours Retry-After (seconds) and retry-after-ms on 429', async () => {
    const { fetch } = scripted([
      json(429, { code: 'RATE_LIMIT_EXCEEDED' }, { 'retry-after': '3' }),
      json(429, {}, { 'retry-after-ms': '1250' }),
      json(200, {}),
    ]);
    const { http, sleeps } = client(fetch);
    await http.json({ method: 'GET', path: '/x' }, anyObject);
    expect(sleeps).toEqual([3000, 1250]);
  });

  it('reads Retry-After as an HTTP date, and ignores waits over a minute', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs(new Headers({ 'retry-after': 'Thu, 01 Jan 2026 00:00:05 GMT' }), now)).toBe(5000);
    expect(retryAfterMs(new Headers({ 'retry-after': '3600' }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers(), now)).toBeUndefined();
  });

  it('backoff doubles up to 8 s with jitter below the base', () => {
    expect(backoffMs(0, () => 0)).toBe(500);
    expect(backoffMs(1, () => 0)).toBe(1000);
    expect(backoffMs(2, () => 0.999)).toBeGreaterThanOrEqual(1500);
    expect(backoffMs(10, () => 0)).toBe(8000);
    expect(backoffMs(10, () => 1)).toBe(6000);
  });

  it('never re-sends a POST (an execution) after a 5xx, a 429 or a connection error', async () => {
    for (const answer of [json(500, {}), json(429, {}, { 'retry-after': '0' }), new TypeError('socket hang up')]) {
      const { fetch, calls } = scripted([answer, json(200, {})]);
      const { http, sleeps } = client(fetch);
      const err = await http
        .json({ method: 'POST', path: '/execute', json: { code: 'x' } }, anyObject)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(answer instanceof Error ? APIConnectionError : APIError);
      expect(calls).toHaveLength(1);
      expect(sleeps).toEqual([]);
    }
  });

  it('retries a POST marked idempotent', async () => {
    const { fetch, calls } = scripted([json(503, {}), json(200, { ok: true })]);
    const { http } = client(fetch);
    await http.json({ method: 'POST', path: '/pause', idempotent: true }, anyObject);
    expect(calls).toHaveLength(2);
  });

  it('does not retry 4xx answers other than 429', async () => {
    const { fetch, calls } = scripted([json(400, { code: 'INVALID_REQUEST', message: 'Invalid path' })]);
    const { http } = client(fetch);
    await expect(http.json({ method: 'GET', path: '/x' }, anyObject)).rejects.toBeInstanceOf(BadRequestError);
    expect(calls).toHaveLength(1);
  });

  it('refreshes credentials once after a 401 and sends the request again, also a POST', async () => {
    const { fetch, calls } = scripted([json(401, { code: 'TOKEN_EXPIRED' }), json(200, { done: true })]);
    const { http, refreshes } = client(fetch);
    expect(await http.json({ method: 'POST', path: '/execute', json: {} }, anyObject)).toEqual({ done: true });
    expect(refreshes).toHaveLength(1);
    expect(calls.map((c) => c.headers.authorization)).toEqual(['Bearer first', 'Bearer second']);
  });

  it('a second 401 after the refresh is final', async () => {
    const { fetch, calls } = scripted([json(401, {}), json(401, { message: 'Invalid token' })]);
    const { http } = client(fetch);
    await expect(http.json({ method: 'GET', path: '/x' }, anyObject)).rejects.toBeInstanceOf(AuthenticationError);
    expect(calls).toHaveLength(2);
  });
});

describe('HTTPClient timeouts and aborts', () => {
  it('throws APITimeoutError when no answer comes within timeoutMs, after retrying an idempotent request', async () => {
    const { fetch, calls } = scripted(['hang', 'hang']);
    const { http } = client(fetch, { maxRetries: 1, timeoutMs: 30 });
    const err = await http.json({ method: 'GET', path: '/slow' }, anyObject).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APITimeoutError);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(calls).toHaveLength(2);
  });

  it('a per-call timeoutMs overrides the client default, and a POST times out without a retry', async () => {
    const { fetch, calls } = scripted(['hang']);
    const { http } = client(fetch, { timeoutMs: 60_000 });
    const err = await http
      .json({ method: 'POST', path: '/execute', json: {}, timeoutMs: 20 }, anyObject)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APITimeoutError);
    expect((err as Error).message).toContain('20 ms');
    expect(calls).toHaveLength(1);
  });

  it('an aborted signal rejects with APIUserAbortError and is not retried', async () => {
    const { fetch, calls } = scripted(['hang', json(200, {})]);
    const { http } = client(fetch);
    const controller = new AbortController();
    const pending = http.json({ method: 'GET', path: '/x', signal: controller.signal }, anyObject);
    setTimeout(() => controller.abort(), 10);
    await expect(pending).rejects.toBeInstanceOf(APIUserAbortError);
    expect(calls).toHaveLength(1);
  });

  it('an already-aborted signal sends nothing', async () => {
    const { fetch, calls } = scripted([json(200, {})]);
    const { http } = client(fetch);
    await expect(
      http.json({ method: 'GET', path: '/x', signal: AbortSignal.abort() }, anyObject),
    ).rejects.toBeInstanceOf(APIUserAbortError);
    expect(calls).toHaveLength(0);
  });

  it('rejects answers that do not match the schema', async () => {
    const { fetch } = scripted([json(200, { id: 5 })]);
    const { http } = client(fetch);
    const { z } = await import('zod');
    await expect(http.json({ method: 'GET', path: '/x' }, z.object({ id: z.string() }))).rejects.toBeInstanceOf(
      InvalidResponseError,
    );
  });
});

describe('APIError.from', () => {
  const h = (id?: string) => new Headers(id ? { 'x-request-id': id } : {});
  const cases: Array<[number, unknown, new (...a: never[]) => APIError]> = [
    [400, { code: 'INVALID_REQUEST', message: 'bad' }, BadRequestError],
    [401, { error: { code: 'AUTHENTICATION_REQUIRED', message: 'no key' } }, AuthenticationError],
    [403, { code: 'PATH_NOT_ALLOWED', message: 'Path not allowed' }, PermissionDeniedError],
    [404, { code: 'RESOURCE_NOT_FOUND', message: 'Nothing here' }, NotFoundError],
    [404, { code: 'SANDBOX_NOT_FOUND', message: 'Sandbox sbx not found' }, SandboxNotFoundError],
    [404, { message: 'Sandbox sbx not found' }, SandboxNotFoundError],
    [410, { code: 'SANDBOX_EXPIRED' }, SandboxNotFoundError],
    [404, { code: 'FILE_NOT_FOUND', message: 'File not found: /workspace/x', path: '/workspace/x' }, FileNotFoundError],
    [404, { code: 'TEMPLATE_NOT_FOUND', message: 'Template not found: x' }, TemplateNotFoundError],
    [409, { code: 'SANDBOX_PAUSED', message: 'Sandbox is paused' }, SandboxNotRunningError],
    [409, { code: 'CONFLICT' }, ConflictError],
    [429, { code: 'RATE_LIMIT_EXCEEDED' }, RateLimitError],
    [502, 'Bad gateway', InternalServerError],
  ];
  it.each(cases)('maps %i %j to the right class', (status, body, cls) => {
    const err = APIError.from(status, body, h('req_1'));
    expect(err).toBeInstanceOf(cls);
    expect(err).toBeInstanceOf(APIError);
    expect(err.status).toBe(status);
    expect(err.requestId).toBe('req_1');
  });

  it('reads code and message from the nested control-plane envelope and the flat agent one', () => {
    const nested = APIError.from(403, { error: { code: 'FORBIDDEN', message: 'no', details: {} } }, h());
    expect(nested.code).toBe('FORBIDDEN');
    expect(nested.message).toBe('no (403 FORBIDDEN)');
    const flat = APIError.from(404, { error: 'File not found: /x', code: 'FILE_NOT_FOUND', path: '/x' }, h());
    expect(flat.message).toContain('File not found: /x');
    expect((flat as FileNotFoundError).path).toBe('/x');
    expect(APIError.from(418, undefined, h()).message).toBe('HTTP 418 (418)');
  });
});

describe('Sandbox over an injected fetch', () => {
  const sandboxBody = {
    id: 'sbtest',
    object: 'sandbox',
    status: 'running',
    public_host: 'http://warren.test',
    auth_token: 'tok',
    token_expires_at: new Date(Date.now() + 86_400_000).toISOString(),
  };

  it('create sends the wire body, is never retried, and agent calls carry the sandbox token', async () => {
    const { fetch, calls } = scripted([json(201, sandboxBody), json(200, { exists: true, path: '/workspace/a' })]);
    const sb = await Sandbox.create({
      apiKey: 'k',
      baseURL: 'http://warren.test',
      fetch,
      template: 'base',
      timeoutMs: 90_500,
      envs: { A: '1' },
      metadata: { team: 'x' },
    });
    expect(JSON.parse(calls[0]?.body ?? '{}')).toEqual({
      template_name: 'base',
      timeout_seconds: 91,
      env_vars: { A: '1' },
      internet_access: false,
      metadata: { team: 'x' },
    });
    expect(calls[0]?.headers['x-api-key']).toBe('k');
    expect(await sb.files.exists('/workspace/a')).toBe(true);
    expect(calls[1]?.url).toBe('http://warren.test/files/exists?path=%2Fworkspace%2Fa');
    expect(calls[1]?.headers.authorization).toBe('Bearer tok');

    const failing = scripted([json(503, {}), json(201, sandboxBody)]);
    await expect(
      Sandbox.create({ apiKey: 'k', baseURL: 'http://warren.test', fetch: failing.fetch }),
    ).rejects.toBeInstanceOf(InternalServerError);
    expect(failing.calls).toHaveLength(1);
  });

  it('refreshes a token that expires within ten minutes before the agent call', async () => {
    const soon = { ...sandboxBody, token_expires_at: new Date(Date.now() + 5 * 60_000).toISOString() };
    const later = new Date(Date.now() + 86_400_000).toISOString();
    const { fetch, calls } = scripted([
      json(201, soon),
      json(200, { auth_token: 'fresh', token_expires_at: later }),
      json(200, { exists: false, path: '/x' }),
      json(200, { exists: false, path: '/x' }),
    ]);
    const sb = await Sandbox.create({ apiKey: 'k', baseURL: 'http://warren.test', fetch });
    await sb.files.exists('/x');
    await sb.files.exists('/x');
    expect(calls.map((c) => new URL(c.url).pathname)).toEqual([
      '/v1/sandboxes',
      '/v1/sandboxes/sbtest/token/refresh',
      '/files/exists',
      '/files/exists',
    ]);
    expect(calls[1]?.headers['x-api-key']).toBe('k');
    expect(calls[2]?.headers.authorization).toBe('Bearer fresh');
    expect(sb.accessToken).toBe('fresh');
  });

  it('list follows next_cursor across pages', async () => {
    const item = (id: string) => ({ ...sandboxBody, id });
    const { fetch, calls } = scripted([
      json(200, { object: 'list', data: [item('a'), item('b')], has_more: true, next_cursor: 'c1' }),
      json(200, { object: 'list', data: [item('c')], has_more: false, next_cursor: null }),
    ]);
    const ids: string[] = [];
    for await (const s of Sandbox.list({ apiKey: 'k', baseURL: 'http://warren.test', fetch, pageSize: 2 })) {
      ids.push(s.sandboxId);
    }
    expect(ids).toEqual(['a', 'b', 'c']);
    expect(new URL(calls[1]?.url ?? '').searchParams.get('cursor')).toBe('c1');
  });

  it('runCode is sent once even when the answer is a 5xx', async () => {
    const { fetch, calls } = scripted([json(201, sandboxBody), json(500, { message: 'boom' }), json(200, {})]);
    const sb = await Sandbox.create({ apiKey: 'k', baseURL: 'http://warren.test', fetch });
    await expect(sb.runCode('print(1)')).rejects.toBeInstanceOf(InternalServerError);
    expect(calls.filter((c) => c.url.endsWith('/execute'))).toHaveLength(1);
  });

  it('fails fast without an API key', async () => {
    const saved = process.env.WARREN_API_KEY;
    delete process.env.WARREN_API_KEY;
    try {
      await expect(Sandbox.create({ baseURL: 'http://warren.test' })).rejects.toThrow(/Missing API key/);
    } finally {
      if (saved !== undefined) process.env.WARREN_API_KEY = saved;
    }
  });
});
