import { request } from 'node:http';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../test-helpers.ts';
import { type AppEnv, requestHeader } from './app-env.ts';
import { newRequestId } from './request-id.ts';

/** A context whose `env` carries Node's raw headers, as on Node's server (node-server.ts). */
async function headerOn(rawHeaders: string[], name: string): Promise<string | undefined> {
  const app = new Hono<AppEnv>();
  app.get('/', (c) => c.json({ value: requestHeader(c, name) ?? null }));
  const res = await app.request('/', {}, { incoming: { rawHeaders } });
  return ((await res.json()) as { value: string | null }).value ?? undefined;
}

describe('requestHeader', () => {
  it("reads Node's raw headers case-insensitively, every value joined like Headers.get", async () => {
    expect(await headerOn(['Host', 'x', 'X-Request-ID', 'gw-1'], 'x-request-id')).toBe('gw-1');
    expect(await headerOn(['authorization', 'a', 'Authorization', 'b'], 'authorization')).toBe('a, b');
    expect(await headerOn(['Host', 'x'], 'authorization')).toBeUndefined();
  });

  it('falls back to the web request in-process', async () => {
    const app = new Hono<AppEnv>();
    app.get('/', (c) => c.text(requestHeader(c, 'x-thing') ?? 'none'));
    expect(await (await app.request('/', { headers: { 'X-Thing': 'v' } })).text()).toBe('v');
  });
});

describe('newRequestId', () => {
  it('answers req_ and 16 hex digits, distinct across refills of its random bytes', () => {
    const ids = Array.from({ length: 300 }, () => newRequestId());
    for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{16}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe("on Node's server", () => {
  let agent: TestAgent;
  let address: string;
  beforeAll(async () => {
    agent = await createTestAgent({ WARREN_AGENT_MAX_BODY_BYTES: '1024' });
    address = await agent.listen();
  });
  afterAll(() => agent.cleanup());

  /** One request with raw header lines (a repeated name is sent as several lines). */
  function call(
    method: string,
    path: string,
    headers: Record<string, string | string[]>,
    body?: string,
  ): Promise<{ status: number; rawHeaders: string[]; body: string }> {
    const [host, port] = address.split(':');
    return new Promise((resolve, reject) => {
      const req = request({ host, port: Number(port), method, path, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }
  const requestIds = (rawHeaders: string[]) =>
    rawHeaders.filter((_, i) => i % 2 === 1 && rawHeaders[i - 1]!.toLowerCase() === 'x-request-id');

  it('sends one X-Request-ID on answers and errors, the caller’s when safe', async () => {
    const ok = await call('GET', '/health', {});
    expect(ok.status).toBe(200);
    expect(requestIds(ok.rawHeaders)).toEqual([expect.stringMatching(/^req_[0-9a-f]{16}$/)]);
    const given = await call('GET', '/health', { 'X-Request-ID': 'gw-123' });
    expect(requestIds(given.rawHeaders)).toEqual(['gw-123']);
    const denied = await call('GET', '/env', {});
    expect(denied.status).toBe(401);
    const [id] = requestIds(denied.rawHeaders);
    expect(requestIds(denied.rawHeaders)).toHaveLength(1);
    expect(JSON.parse(denied.body)).toMatchObject({ code: 'TOKEN_INVALID', request_id: id });
    const missing = await call('GET', '/no/such/route', { authorization: `Bearer ${agent.token()}` });
    expect(missing.status).toBe(404);
    expect(requestIds(missing.rawHeaders)).toHaveLength(1);
  });

  it('checks the bearer token from the raw headers, a repeated Authorization as one joined value', async () => {
    expect((await call('GET', '/env', { authorization: `Bearer ${agent.token()}` })).status).toBe(200);
    const twice = await call('GET', '/env', { authorization: [`Bearer ${agent.token()}`, 'Bearer other'] });
    expect(twice.status).toBe(401);
  });

  it('rejects a declared Content-Length over the limit', async () => {
    const big = JSON.stringify({ code: 'x'.repeat(2048), language: 'python' });
    const res = await call(
      'POST',
      '/execute',
      { authorization: `Bearer ${agent.token()}`, 'content-type': 'application/json' },
      big,
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });
});
