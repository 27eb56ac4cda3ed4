import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceError } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Driver } from '../runtime/driver.ts';
import type { SandboxRow, Store } from '../store/store.ts';
import type { Logger } from './sandboxes.ts';
import { TokenService } from './tokens.ts';
import {
  type AsyncExecutionOptions,
  AsyncExecutionService,
  asyncExecuteRequestSchema,
  hostAllowed,
  parseAllowList,
  signWebhook,
} from './webhooks.ts';

const silent: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

function fakeStore(statuses: Record<string, SandboxRow['status']>): Store {
  const meta = new Map<string, string>();
  return {
    getMeta: (k: string) => meta.get(k),
    setMeta: (k: string, v: string) => meta.set(k, v),
    getSandbox: (id: string) => (statuses[id] ? ({ id, status: statuses[id] } as SandboxRow) : undefined),
  } as unknown as Store;
}

interface Hit {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
}

async function listen(server: Server, where: string | number): Promise<void> {
  await new Promise<void>((ok) =>
    typeof where === 'string' ? server.listen(where, ok) : server.listen(0, '127.0.0.1', ok),
  );
}

describe('webhook signature and allow-list', () => {
  it('signs "<timestamp>.<body>" with HMAC-SHA256', () => {
    const expected = createHmac('sha256', 'k').update('1700000000.{"a":1}').digest('hex');
    expect(signWebhook('k', 1_700_000_000, '{"a":1}')).toBe(`sha256=${expected}`);
    expect(signWebhook('k', 1_700_000_001, '{"a":1}')).not.toBe(`sha256=${expected}`);
  });

  it('allows every host without a list, and only listed hosts or suffixes with one', () => {
    expect(parseAllowList(undefined)).toBeUndefined();
    expect(parseAllowList(' * ')).toBeUndefined();
    const allow = parseAllowList('Hooks.Example.com, *.trusted.dev,127.0.0.1');
    expect(allow).toEqual(['hooks.example.com', '*.trusted.dev', '127.0.0.1']);
    expect(hostAllowed(undefined, 'http://169.254.169.254/')).toBe(true);
    expect(hostAllowed(allow, 'https://hooks.example.com/x')).toBe(true);
    expect(hostAllowed(allow, 'https://a.b.trusted.dev:8443/x')).toBe(true);
    expect(hostAllowed(allow, 'https://trusted.dev/x')).toBe(false);
    expect(hostAllowed(allow, 'https://eviltrusted.dev/x')).toBe(false);
    expect(hostAllowed(allow, 'http://127.0.0.1:9/x')).toBe(true);
    expect(hostAllowed(allow, 'http://localhost/x')).toBe(false);
  });

  it('validates the request body', () => {
    const ok = asyncExecuteRequestSchema.safeParse({ code: 'x', callback_url: 'https://h/x', env: { A: 1 } });
    expect(ok.success && ok.data.env).toEqual({ A: '1' });
    for (const bad of [
      { code: 'x' },
      { code: 'x', callback_url: 'file:///etc/passwd' },
      { code: 'x', callback_url: 'https://h/', callback_headers: { 'Content-Type': 'text/plain' } },
      { code: 'x', callback_url: 'https://h/', callback_headers: { A: 'b\nc' } },
      { code: 'x', callback_url: 'https://h/', timeout: 86_401 },
      { code: 'x', callback_url: 'https://h/', language: 'cobol' },
      { code: 'x', callback_url: 'https://h/', callback_signature_secret: '' },
    ])
      expect(asyncExecuteRequestSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
  });
});

describe('AsyncExecutionService', () => {
  let dir: string;
  const agentSocket = () => join(dir, 'agent.sock');
  const hits: Hit[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push({ path: req.url ?? '', headers: req.headers, raw: Buffer.concat(chunks).toString('utf8') });
      if (req.url === '/500') res.writeHead(500).end();
      else if (req.url === '/400') res.writeHead(400).end();
      else if (req.url === '/redirect') res.writeHead(302, { location: '/ok' }).end();
      else res.writeHead(200).end('ok');
    });
  });
  // A stand-in agent: `/execute` answers by the code it is given.
  const agent = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code: string; timeout: number };
      const send = (status: number, json: unknown) => res.writeHead(status).end(JSON.stringify(json));
      if (body.code === 'bad') return send(400, { error: 'unsupported thing', code: 'INVALID_REQUEST' });
      if (body.code === 'slow') {
        setTimeout(() => send(200, { success: true, stdout: '', stderr: '', exit_code: 0, execution_time: 0.3 }), 300);
        return;
      }
      if (body.code === 'timeout')
        return send(200, {
          success: false,
          stdout: '',
          stderr: 'x',
          exit_code: 124,
          timed_out: true,
          execution_time: 1,
        });
      send(200, {
        success: body.code === 'ok',
        stdout: body.code === 'big' ? 'é'.repeat(100) : `ran ${body.code} for ${body.timeout}s\n`,
        stderr: '',
        exit_code: body.code === 'ok' || body.code === 'big' ? 0 : 2,
        execution_time: 0.01,
        auth: req.headers.authorization,
      });
    });
  });
  let base: string;

  const make = (options: Partial<AsyncExecutionOptions> = {}) => {
    const store = fakeStore({ sbrun: 'running', sbpaused: 'paused' });
    const driver = { agentSocket: () => agentSocket() } as unknown as Driver;
    return new AsyncExecutionService(
      { store, driver, tokens: new TokenService(store, 86_400), log: silent },
      {
        maxPerSandbox: 4,
        maxTotal: 100,
        allow: undefined,
        maxOutputBytes: 1024,
        attemptTimeoutMs: 2000,
        retryDelaysMs: [20, 20],
        ...options,
      },
    );
  };
  const body = (over: Record<string, unknown>) =>
    asyncExecuteRequestSchema.parse({ code: 'ok', callback_url: `${base}/ok`, ...over });
  const until = async (pred: () => boolean, ms = 5000) => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error('condition not met in time');
      await new Promise((ok) => setTimeout(ok, 10));
    }
  };
  const hitsOf = (id: string) => hits.filter((h) => h.raw.includes(id));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-webhooks-'));
    await listen(agent, agentSocket());
    await listen(receiver, 0);
    base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    agent.close();
    receiver.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers a completed result with signature, timestamp and custom headers', async () => {
    const svc = make();
    const accepted = svc.submit(
      'sbrun',
      body({ timeout: 12, callback_signature_secret: 's', callback_headers: { 'X-Trace': 't1' } }),
    );
    expect(accepted).toMatchObject({ status: 'queued', callback_url: `${base}/ok` });
    await until(() => hitsOf(accepted.execution_id).length === 1);
    const hit = hitsOf(accepted.execution_id)[0]!;
    const ts = Number(hit.headers['x-hopx-timestamp']);
    expect(hit.headers['x-hopx-signature']).toBe(signWebhook('s', ts, hit.raw));
    expect(hit.headers['x-trace']).toBe('t1');
    expect(JSON.parse(hit.raw)).toMatchObject({
      execution_id: accepted.execution_id,
      sandbox_id: 'sbrun',
      status: 'completed',
      success: true,
      stdout: 'ran ok for 12s\n',
      exit_code: 0,
    });
    await until(() => svc.inFlight('sbrun') === 0);
  });

  it('maps failures, timeouts and agent refusals', async () => {
    const svc = make();
    const failed = svc.submit('sbrun', body({ code: 'fail' }));
    const timedOut = svc.submit('sbrun', body({ code: 'timeout' }));
    const refused = svc.submit('sbrun', body({ code: 'bad' }));
    const paused = svc.submit('sbpaused', body({}));
    for (const a of [failed, timedOut, refused, paused]) await until(() => hitsOf(a.execution_id).length === 1);
    const result = (a: { execution_id: string }) =>
      JSON.parse(hitsOf(a.execution_id)[0]!.raw) as Record<string, unknown>;
    expect(result(failed)).toMatchObject({ status: 'failed', success: false, exit_code: 2 });
    expect(result(timedOut)).toMatchObject({ status: 'timeout', success: false, exit_code: 124 });
    expect(result(refused)).toMatchObject({ status: 'failed', exit_code: -1, error: 'unsupported thing' });
    expect(result(paused)).toMatchObject({ status: 'failed', error: 'Sandbox sbpaused is paused' });
  });

  it('bounds the output in the callback, without splitting a character', async () => {
    const svc = make({ maxOutputBytes: 51 });
    const a = svc.submit('sbrun', body({ code: 'big' }));
    await until(() => hitsOf(a.execution_id).length === 1);
    const r = JSON.parse(hitsOf(a.execution_id)[0]!.raw) as { stdout: string; stdout_truncated: boolean };
    expect(r.stdout).toBe('é'.repeat(25));
    expect(r.stdout_truncated).toBe(true);
  });

  it('retries 5xx up to the limit, never retries 4xx, never follows redirects', async () => {
    const svc = make();
    const five = svc.submit('sbrun', body({ callback_url: `${base}/500` }));
    const four = svc.submit('sbrun', body({ callback_url: `${base}/400` }));
    const moved = svc.submit('sbrun', body({ callback_url: `${base}/redirect` }));
    await until(() => svc.inFlight('sbrun') === 0);
    expect(hitsOf(five.execution_id).map((h) => h.path)).toEqual(['/500', '/500', '/500']);
    expect(hitsOf(four.execution_id).map((h) => h.path)).toEqual(['/400']);
    expect(hitsOf(moved.execution_id).map((h) => h.path)).toEqual(['/redirect']);
  });

  it('refuses hosts off the allow-list and executions beyond the caps', async () => {
    const svc = make({ allow: ['hooks.example.com'], maxPerSandbox: 2 });
    expect(() => svc.submit('sbrun', body({}))).toThrow(/not allowed/);
    const open = make({ maxPerSandbox: 2, maxTotal: 3 });
    open.submit('sbrun', body({ code: 'slow' }));
    open.submit('sbrun', body({ code: 'slow' }));
    let err: unknown;
    try {
      open.submit('sbrun', body({ code: 'slow' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe('RATE_LIMIT_EXCEEDED');
    open.submit('sbother', body({ code: 'slow' }));
    expect(() => open.submit('sbthird', body({ code: 'slow' }))).toThrow(/Too many/);
    expect(open.inFlight()).toBe(3);
    await until(() => open.inFlight() === 0);
    expect(() => open.submit('sbrun', body({}))).not.toThrow();
  });
});
