import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sandbox } from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { agent, type CreatedSandbox, createSandbox, deleteSandbox } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');

interface Delivery {
  headers: IncomingHttpHeaders;
  raw: string;
  body: Record<string, unknown>;
  receivedAt: number;
}

/** A callback receiver on the host's loopback; answers 503 to the first delivery of ids listed in `failOnce`. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  readonly failOnce = new Set<string>();
  readonly server: Server;

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const body = JSON.parse(raw) as Record<string, unknown>;
        this.deliveries.push({ headers: req.headers, raw, body, receivedAt: Date.now() });
        const id = String(body.execution_id);
        if (this.failOnce.delete(id)) {
          res.writeHead(503).end('try later');
          return;
        }
        res.writeHead(204).end();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  of(executionId: string): Delivery[] {
    return this.deliveries.filter((d) => d.body.execution_id === executionId);
  }

  async waitFor(executionId: string, count = 1, timeoutMs = 60_000): Promise<Delivery[]> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const got = this.of(executionId);
      if (got.length >= count) return got;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    throw new Error(`no callback for ${executionId} within ${timeoutMs} ms`);
  }
}

/** Verifies `X-HOPX-Signature: sha256=hex(HMAC-SHA256(secret, "<X-HOPX-Timestamp>.<raw body>"))`. */
function signatureValid(d: Delivery, secret: string): boolean {
  const ts = String(d.headers['x-hopx-timestamp']);
  const given = String(d.headers['x-hopx-signature'] ?? '');
  const expected = `sha256=${createHmac('sha256', secret).update(`${ts}.${d.raw}`).digest('hex')}`;
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

describe('POST /execute/async (run by the server, result POSTed to a callback)', () => {
  const receiver = new Receiver();
  let hook: string;
  let sb: CreatedSandbox;

  beforeAll(async () => {
    hook = await receiver.listen();
    sb = await createSandbox({ template_name: 'base' });
  });

  afterAll(async () => {
    receiver.server.close();
    if (sb) {
      await deleteSandbox(sb);
      expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
    }
  });

  it('answers queued at once and POSTs a signed, timestamped result to a host loopback listener', async () => {
    const secret = 'whsec_e2e_0123456789';
    const before = Math.floor(Date.now() / 1000);
    const r = await agent<Record<string, unknown>>(sb, 'POST', '/execute/async', {
      code: "import os; print('hello async', os.environ['GREETING'])",
      language: 'python',
      timeout: 30,
      env: { GREETING: 'there' },
      callback_url: hook,
      callback_headers: { 'X-Custom-Header': 'custom-value' },
      callback_signature_secret: secret,
    });
    expect(r.status).toBe(200);
    expect(r.body.execution_id).toMatch(/^exec_[0-9a-f]{16}$/);
    expect(r.body.status).toBe('queued');
    expect(r.body.callback_url).toBe(hook);
    expect(r.body.message).toBe('Execution queued. Will POST to callback_url when complete.');
    expect(r.body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const [d] = await receiver.waitFor(String(r.body.execution_id));
    expect(d!.headers['content-type']).toBe('application/json');
    expect(d!.headers['x-custom-header']).toBe('custom-value');
    const ts = Number(d!.headers['x-hopx-timestamp']);
    expect(Number.isInteger(ts)).toBe(true);
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(Math.ceil(d!.receivedAt / 1000));
    expect(d!.headers['x-hopx-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(signatureValid(d!, secret)).toBe(true);
    expect(signatureValid(d!, 'another secret')).toBe(false);
    // The signature covers the timestamp: the same body with another timestamp does not verify.
    expect(signatureValid({ ...d!, headers: { ...d!.headers, 'x-hopx-timestamp': String(ts - 600) } }, secret)).toBe(
      false,
    );
    expect(d!.body).toMatchObject({
      execution_id: r.body.execution_id,
      sandbox_id: sb.id,
      status: 'completed',
      success: true,
      stdout: 'hello async there\n',
      exit_code: 0,
    });
    expect(typeof d!.body.execution_time).toBe('number');
    expect(d!.body.error).toBeUndefined();
  });

  it('a failing program gives status "failed" with its exit code and stderr (official SDK runCodeAsync)', async () => {
    const sdk = await Sandbox.connect(sb.id, ctx.apiKey, ctx.baseURL);
    const queued = await sdk.runCodeAsync("import sys\nprint('partial')\nprint('boom', file=sys.stderr)\nsys.exit(3)", {
      callbackUrl: hook,
      timeout: 30,
    });
    expect(queued.status).toBe('queued');
    expect(queued.callback_url).toBe(hook);
    const [d] = await receiver.waitFor(queued.execution_id);
    expect(d!.headers['x-hopx-signature']).toBeUndefined();
    expect(Number(d!.headers['x-hopx-timestamp'])).toBeGreaterThan(0);
    expect(d!.body).toMatchObject({ status: 'failed', success: false, exit_code: 3, stdout: 'partial\n' });
    expect(String(d!.body.stderr)).toContain('boom');
  });

  it('code that outlives its timeout gives status "timeout"', async () => {
    const r = await agent<{ execution_id: string }>(sb, 'POST', '/execute/async', {
      code: 'sleep 30',
      language: 'bash',
      timeout: 1,
      callback_url: hook,
    });
    expect(r.status).toBe(200);
    const [d] = await receiver.waitFor(r.body.execution_id);
    expect(d!.body).toMatchObject({ status: 'timeout', success: false, exit_code: 124 });
  });

  it('retries a callback the receiver answered 5xx, signing each attempt with its own timestamp', async () => {
    const secret = 'retry-secret';
    // The id is known from the answer; the code sleeps a second so the mark is set before the first delivery.
    const r = await agent<{ execution_id: string }>(sb, 'POST', '/execute/async', {
      code: 'sleep 1; echo retried',
      language: 'bash',
      timeout: 30,
      callback_url: hook,
      callback_signature_secret: secret,
    });
    expect(r.status).toBe(200);
    receiver.failOnce.add(r.body.execution_id);
    const got = await receiver.waitFor(r.body.execution_id, 2);
    expect(got).toHaveLength(2);
    for (const d of got) {
      expect(signatureValid(d, secret)).toBe(true);
      expect(d.body.stdout).toBe('retried\n');
    }
    expect(got[1]!.receivedAt - got[0]!.receivedAt).toBeGreaterThanOrEqual(500);
  });

  it('caps async executions in flight per sandbox (429 beyond the cap)', async () => {
    const submit = () =>
      agent<{ execution_id: string; code?: string }>(sb, 'POST', '/execute/async', {
        code: 'sleep 3',
        language: 'bash',
        timeout: 20,
        callback_url: hook,
      });
    const replies = [];
    for (let i = 0; i < 9; i++) replies.push(await submit());
    expect(replies.slice(0, 8).map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(replies[8]!.status).toBe(429);
    expect(replies[8]!.body.code).toBe('RATE_LIMIT_EXCEEDED');
    for (const r of replies.slice(0, 8)) {
      const [d] = await receiver.waitFor(r.body.execution_id);
      expect(d!.body.status).toBe('completed');
    }
    // Once they are delivered the sandbox can queue again.
    const again = await submit();
    expect(again.status).toBe(200);
    await receiver.waitFor(again.body.execution_id);
  });

  it('rejects bad requests with 400 envelopes, and needs the sandbox token', async () => {
    const valid = { code: 'print(1)', callback_url: hook };
    const bad: Array<[unknown, string, RegExp]> = [
      [{ code: 'print(1)' }, 'INVALID_REQUEST', /callback_url/],
      [{ ...valid, callback_url: 'ftp://127.0.0.1/x' }, 'INVALID_REQUEST', /callback_url/],
      [{ ...valid, callback_url: 'not a url' }, 'INVALID_REQUEST', /callback_url/],
      [{ ...valid, language: 'cobol' }, 'INVALID_REQUEST', /language/],
      [{ ...valid, timeout: -5 }, 'INVALID_REQUEST', /timeout/],
      [{ ...valid, callback_headers: { 'X-Bad': 'a\r\nInjected: 1' } }, 'INVALID_REQUEST', /callback_headers/],
      [{ ...valid, callback_headers: { 'X-HOPX-Signature': 'forged' } }, 'INVALID_REQUEST', /callback_headers/],
      [{ ...valid, callback_headers: { 'bad header': 'x' } }, 'INVALID_REQUEST', /callback_headers/],
      [{ ...valid, code: 42 }, 'INVALID_REQUEST', /code/],
      [{ ...valid, env: { WARREN_X: '1' } }, 'INVALID_REQUEST', /env/],
    ];
    for (const [body, code, field] of bad) {
      const r = await agent<{ code: string; message: string; error: string; request_id: string }>(
        sb,
        'POST',
        '/execute/async',
        body,
      );
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe(code);
      expect(r.body.message).toMatch(field);
      expect(typeof r.body.error).toBe('string');
      expect(r.body.request_id).toMatch(/^req_/);
    }
    const notJSON = await agent<{ code: string }>(sb, 'POST', '/execute/async', undefined, {
      raw: '{"code":',
      headers: { 'content-type': 'application/json' },
    });
    expect(notJSON.status).toBe(400);
    expect(notJSON.body.code).toBe('INVALID_JSON');
    const tooBig = await agent<{ code: string }>(sb, 'POST', '/execute/async', {
      ...valid,
      code: 'x'.repeat(2 * 1024 * 1024),
    });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.code).toBe('PAYLOAD_TOO_LARGE');
    const get = await agent<{ code: string }>(sb, 'GET', '/execute/async');
    expect(get.status).toBe(405);
    expect(get.body.code).toBe('METHOD_NOT_ALLOWED');
    const noToken = await agent<{ code: string }>(sb, 'POST', '/execute/async', valid, { token: null });
    expect(noToken.status).toBe(401);
    expect(noToken.body.code).toBe('TOKEN_INVALID');
    // Nothing of the above was run: no callback arrives for them.
    await new Promise((ok) => setTimeout(ok, 500));
    expect(receiver.deliveries.filter((d) => d.body.stdout === '1\n')).toEqual([]);
  });
});
