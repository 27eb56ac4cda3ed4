import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { agent, type CreatedSandbox, cp, createSandbox, deleteSandbox, sh } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');

type Envelope = { code: string; message: string; error: unknown; request_id: string };

function expectEnvelope(r: { status: number; body: unknown; headers: Headers }, status: number, code: string): void {
  expect(r.status).toBe(status);
  const body = r.body as Envelope;
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  expect(body.request_id).toMatch(/^req_/);
  expect(r.headers.get('content-type')).toContain('application/json');
  expect(r.headers.get('x-request-id')).toBeTruthy();
  expect(JSON.stringify(body)).not.toMatch(/at .*\.ts:\d+/); // no stack traces
}

/** A control-plane POST whose body is sent in `parts` with chunked transfer encoding (no Content-Length). */
function chunkedPost(path: string, parts: string[]): Promise<{ status: number; body: unknown; headers: Headers }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${ctx.baseURL}${path}`,
      { method: 'POST', headers: { 'x-api-key': ctx.apiKey, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown, headers });
        });
      },
    );
    // The server may answer 413 and close before the last part is written.
    req.on('error', reject);
    for (const part of parts) req.write(part);
    req.end();
  });
}

async function serverIsUp(): Promise<void> {
  const r = await fetch(`${ctx.baseURL}/health`);
  expect(r.status).toBe(200);
  expect(((await r.json()) as { status: string }).status).toBe('healthy');
}

describe('control plane rejects bad input with the documented envelope', () => {
  it('malformed JSON → 400 INVALID_JSON', async () => {
    const r = await cp('POST', '/v1/sandboxes', undefined, { raw: '{"template_name": "base",' });
    expectEnvelope(r, 400, 'INVALID_JSON');
    const body = r.body as { error: { code: string; message: string } };
    expect(body.error.code).toBe('INVALID_JSON'); // nested form for the Python SDK
    await serverIsUp();
  });

  it('unknown template → 404', async () => {
    expectEnvelope(await cp('POST', '/v1/sandboxes', { template_name: 'no-such-template' }), 404, 'TEMPLATE_NOT_FOUND');
    expectEnvelope(await cp('GET', '/v1/templates/no-such-template'), 404, 'TEMPLATE_NOT_FOUND');
  });

  it('missing or mistyped fields → 400 INVALID_REQUEST', async () => {
    expectEnvelope(await cp('POST', '/v1/sandboxes', {}), 400, 'INVALID_REQUEST');
    expectEnvelope(
      await cp('POST', '/v1/sandboxes', { template_name: 'base', timeout_seconds: 'soon' }),
      400,
      'INVALID_REQUEST',
    );
    expectEnvelope(
      await cp('POST', '/v1/sandboxes', { template_name: 'base', timeout_seconds: -1 }),
      400,
      'INVALID_REQUEST',
    );
    expectEnvelope(
      await cp('POST', '/v1/sandboxes', { template_name: 'base', env_vars: { 'BAD NAME': 'x' } }),
      400,
      'INVALID_REQUEST',
    );
    expectEnvelope(await cp('GET', '/v1/sandboxes?limit=0'), 400, 'INVALID_REQUEST');
    expectEnvelope(await cp('GET', '/v1/sandboxes?cursor=garbage'), 400, 'INVALID_REQUEST');
  });

  it('oversized body → 413', async () => {
    const big = JSON.stringify({ template_name: 'base', env_vars: { X: 'x'.repeat(2 * 1024 * 1024) } });
    expectEnvelope(await cp('POST', '/v1/sandboxes', undefined, { raw: big }), 413, 'PAYLOAD_TOO_LARGE');
    await serverIsUp();
  });

  it('chunked bodies (no Content-Length) are read, and counted against the limit as they arrive', async () => {
    // Read whole: the template name inside it is looked up.
    const small = await chunkedPost('/v1/sandboxes', ['{"template_name":', ' "no-such-template"}']);
    expectEnvelope(small, 404, 'TEMPLATE_NOT_FOUND');
    const part = 'x'.repeat(256 * 1024);
    const big = await chunkedPost('/v1/sandboxes', [
      '{"template_name": "base", "env_vars": {"X": "',
      ...Array(9).fill(part),
      '"}}',
    ]);
    expectEnvelope(big, 413, 'PAYLOAD_TOO_LARGE');
    await serverIsUp();
  });

  it('no or wrong API key → 401; unknown sandbox → 404 "Sandbox … not found"', async () => {
    const none = await fetch(`${ctx.baseURL}/v1/sandboxes`);
    expect(none.status).toBe(401);
    expectEnvelope(
      await cp('GET', '/v1/sandboxes', undefined, { headers: { 'x-api-key': 'wrong-key-123' } }),
      401,
      'INVALID_TOKEN',
    );
    const missing = await cp('GET', '/v1/sandboxes/sbdoesnotexist00');
    expectEnvelope(missing, 404, 'SANDBOX_NOT_FOUND');
    expect((missing.body as Envelope).message.toLowerCase()).toMatch(/sandbox .* not found/);
    expectEnvelope(await cp('GET', '/v1/nothing-here'), 404, 'NOT_FOUND');
  });
});

describe('agent rejects bad input and path escapes', () => {
  let sb: CreatedSandbox;

  beforeAll(async () => {
    sb = await createSandbox({ template_name: 'base' });
    // An absolute and a relative symlink out of the allowed roots, and a symlinked directory.
    await sh(sb, 'cd /workspace && ln -s /etc abs && ln -s ../../etc rel && ln -s /etc/hostname filelink && echo ok');
  });

  afterAll(async () => {
    await deleteSandbox(sb);
    expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
  });

  it('malformed JSON, missing fields, bad types, oversized bodies', async () => {
    expectEnvelope(
      await agent(sb, 'POST', '/execute', undefined, {
        raw: '{"code":',
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'INVALID_JSON',
    );
    const missing = await agent(sb, 'POST', '/execute', { language: 'python' });
    expect(missing.status).toBe(400);
    expect(['INVALID_REQUEST', 'MISSING_PARAMETER']).toContain((missing.body as Envelope).code);
    expectEnvelope(await agent(sb, 'POST', '/execute', { code: 'x', language: 'cobol' }), 400, 'INVALID_REQUEST');
    const big = new Uint8Array(70 * 1024 * 1024).fill(0x61);
    const r = await agent(sb, 'POST', '/files/write', undefined, {
      raw: big,
      headers: { 'content-type': 'application/json' },
    });
    expectEnvelope(r, 413, 'PAYLOAD_TOO_LARGE');
    expect((await sh(sb, 'echo still-here')).stdout).toBe('still-here\n');
    await serverIsUp();
  });

  it('tokens: none, garbage, and another sandbox’s token are refused', async () => {
    expect((await agent(sb, 'GET', '/info', undefined, { token: null })).status).toBe(401);
    expect((await agent(sb, 'GET', '/info', undefined, { token: 'garbage' })).status).toBe(401);
    const forged = `${sb.auth_token.slice(0, -4)}AAAA`;
    expect((await agent(sb, 'GET', '/info', undefined, { token: forged })).status).toBe(401);
  });

  const escapes = ['/workspace/../etc/passwd', '/workspace/abs/passwd', '/workspace/rel/passwd', '/etc/passwd'];

  it.each(escapes)('read, download, list, exists refuse %s', async (path) => {
    const q = encodeURIComponent(path);
    for (const route of ['/files/read', '/files/download', '/files/list', '/files/exists']) {
      const r = await agent(sb, 'GET', `${route}?path=${q}`);
      expectEnvelope(r, 403, 'PATH_NOT_ALLOWED');
    }
    expectEnvelope(await agent(sb, 'GET', '/files/read?path=%2Fworkspace%2Ffilelink'), 403, 'PATH_NOT_ALLOWED');
  });

  it.each(escapes)('write, mkdir, upload, remove refuse %s and change nothing', async (path) => {
    const target = path.replace(/passwd$/, 'warren-escape');
    expectEnvelope(await agent(sb, 'POST', '/files/write', { path: target, content: 'x' }), 403, 'PATH_NOT_ALLOWED');
    expectEnvelope(await agent(sb, 'POST', '/files/mkdir', { path: `${target}-dir` }), 403, 'PATH_NOT_ALLOWED');
    const form = new FormData();
    form.append('file', new Blob(['x']), 'x.txt');
    form.append('path', target);
    expectEnvelope(await agent(sb, 'POST', '/files/upload', undefined, { raw: form }), 403, 'PATH_NOT_ALLOWED');
    expectEnvelope(
      await agent(sb, 'DELETE', `/files/remove?path=${encodeURIComponent(path)}`),
      403,
      'PATH_NOT_ALLOWED',
    );
    // Writing through a symlink that points at a file outside is refused too.
    expectEnvelope(
      await agent(sb, 'POST', '/files/write', { path: '/workspace/filelink', content: 'x' }),
      403,
      'PATH_NOT_ALLOWED',
    );
    const check = await sh(
      sb,
      'ls /etc | grep -c warren-escape; test -s /etc/passwd && echo passwd-intact; cat /etc/hostname',
    );
    expect(check.stdout.split('\n')[0]).toBe('0');
    expect(check.stdout).toContain('passwd-intact');
    expect(check.stdout).not.toMatch(/^x$/m);
  });

  it('unknown agent route → 404 envelope', async () => {
    expectEnvelope(await agent(sb, 'GET', '/no/such/route'), 404, 'NOT_FOUND');
  });
});
