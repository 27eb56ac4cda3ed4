import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from './test-helpers.ts';

let agent: TestAgent;
beforeAll(async () => {
  agent = await createTestAgent({ WARREN_AGENT_MAX_BODY_BYTES: '1024' });
});
afterAll(() => agent.cleanup());

async function expectError(res: Response, status: number, code: string): Promise<Record<string, unknown>> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('x-request-id')).toMatch(/\S/);
  const body = (await res.json()) as Record<string, unknown>;
  expect(body.code).toBe(code);
  expect(typeof body.error).toBe('string');
  expect(body.message).toBe(body.error);
  expect(body.request_id).toBe(res.headers.get('x-request-id'));
  expect(body).not.toHaveProperty('stack');
  return body;
}

describe('GET /health', () => {
  it('answers healthy without a token', async () => {
    const res = await agent.app.request('/health');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 'healthy', agent: 'warren-agent', vm_id: agent.sandboxId });
    expect(typeof body.uptime_seconds).toBe('number');
    expect(body.features).toMatchObject({ code_execution: true, file_operations: true });
  });

  it('echoes a safe incoming X-Request-ID and replaces an unsafe one', async () => {
    const mine = await agent.app.request('/health', { headers: { 'x-request-id': 'gw-123' } });
    expect(mine.headers.get('x-request-id')).toBe('gw-123');
    const bad = await agent.app.request('/health', { headers: { 'x-request-id': 'a b\tc' } });
    expect(bad.headers.get('x-request-id')).toMatch(/^req_/);
  });
});

describe('GET /info', () => {
  it('describes the agent', async () => {
    const res = await agent.request('/info');
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ vm_id: agent.sandboxId, agent: 'warren-agent', os: 'linux' });
    expect(body.endpoints).toHaveProperty('execute', 'POST /execute');
  });
});

describe('auth', () => {
  const call = (headers: Record<string, string>) => agent.app.request('/env', { headers });

  it('rejects a request without a token', async () => {
    const body = await expectError(await call({}), 401, 'TOKEN_INVALID');
    expect(body.error).toBe('Missing bearer token');
  });

  it('rejects a malformed token and a non-Bearer scheme', async () => {
    await expectError(await call({ authorization: 'Bearer not-a-jwt' }), 401, 'TOKEN_INVALID');
    await expectError(await call({ authorization: `Basic ${agent.token()}` }), 401, 'TOKEN_INVALID');
  });

  it('rejects a token signed with another key', async () => {
    const forged = agent.token({ key: randomBytes(32) });
    await expectError(await call({ authorization: `Bearer ${forged}` }), 401, 'TOKEN_INVALID');
  });

  it("rejects another sandbox's token even with the right key", async () => {
    const other = agent.token({ sandboxId: 'sb-other' });
    await expectError(await call({ authorization: `Bearer ${other}` }), 401, 'TOKEN_INVALID');
  });

  it('rejects an expired token with TOKEN_EXPIRED', async () => {
    const expired = agent.token({ expiresInSeconds: -10 });
    const body = await expectError(await call({ authorization: `Bearer ${expired}` }), 401, 'TOKEN_EXPIRED');
    expect(body.message).toBe('Token expired');
  });

  it('accepts a valid token', async () => {
    const res = await call({ authorization: `Bearer ${agent.token()}` });
    expect(res.status).toBe(200);
  });

  it('guards unknown routes too', async () => {
    await expectError(await agent.app.request('/nope'), 401, 'TOKEN_INVALID');
  });
});

describe('common HTTP behaviour', () => {
  it('answers unknown routes with the NOT_FOUND envelope', async () => {
    await expectError(await agent.request('/no/such/route'), 404, 'NOT_FOUND');
  });

  it('treats an empty JSON body as {}', async () => {
    // {} is valid JSON but misses `path`: the error must be about the field, not the JSON.
    const res = await agent.request('/files/mkdir', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '0' },
    });
    const body = await expectError(res, 400, 'INVALID_REQUEST');
    expect(body.error).toContain('path');
  });

  it('rejects malformed JSON with INVALID_JSON', async () => {
    const res = await agent.request('/execute', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"code": ',
    });
    await expectError(res, 400, 'INVALID_JSON');
  });

  it('names the bad field on validation errors', async () => {
    const res = await agent.json('POST', '/execute', { code: 42 });
    const body = await expectError(res, 400, 'INVALID_REQUEST');
    expect(body.error).toMatch(/^Invalid code:/);
  });

  it('rejects bodies over the limit with 413, declared or streamed', async () => {
    const big = JSON.stringify({ code: 'x'.repeat(2048) });
    const declared = await agent.request('/execute', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': String(big.length) },
      body: big,
    });
    await expectError(declared, 413, 'PAYLOAD_TOO_LARGE');
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(big));
        controller.close();
      },
    });
    const res = await agent.request('/execute', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    await expectError(res, 413, 'PAYLOAD_TOO_LARGE');
  });
});
