import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeResponse } from './app-env.ts';
import { alreadySent, LightResponse, requestListener } from './node-server.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One raw HTTP request (Node's client: nothing here loads undici either). */
function send(port: number, method: string, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    if (body !== undefined) req.setHeader('content-type', 'application/json');
    req.end(body);
  });
}

describe('requestListener', () => {
  let server: Server;
  let port: number;
  const failures: unknown[] = [];
  let aborted: Promise<boolean> | undefined;

  beforeAll(async () => {
    const app = new Hono<{ Bindings: { outgoing: import('node:http').ServerResponse } }>();
    app.get('/json', (c) => {
      nodeResponse(c as never)?.setHeader('x-request-id', 'req_1');
      return c.json({ ok: true }, 201);
    });
    app.get('/text', () => new Response('héllo'));
    app.get('/bytes', () => new Response(new Uint8Array([1, 2, 3]), { headers: [['X-Kind', 'bytes']] }));
    app.get('/stream', () => {
      const parts = ['a', 'b', 'c'];
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = parts.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(new TextEncoder().encode(next));
        },
      });
      return new Response(stream, { headers: { 'content-type': 'text/x-letters' } });
    });
    app.get('/self', (c) => {
      const out = c.env.outgoing;
      out.writeHead(202, { 'content-type': 'text/plain' });
      out.end('written by the route');
      return alreadySent();
    });
    app.get('/header', (c) => c.text(c.req.header('x-probe') ?? 'none'));
    app.post('/echo', async (c) => c.json(await c.req.json()));
    app.get('/mutated', (c) => {
      c.header('x-set-by', 'hono');
      return c.text('with headers', 200);
    });
    app.get('/slow', (c) => {
      const signal = c.req.raw.signal;
      aborted = new Promise((resolve) => signal.addEventListener('abort', () => resolve(true)));
      return new Promise<Response>(() => {});
    });
    server = createServer(
      requestListener(
        (req, env) => {
          if (new URL(req.url).pathname === '/crash') throw new Error('boom');
          return app.fetch(req, env);
        },
        (err) => failures.push(err),
      ),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    server.close();
  });

  it("writes a JSON answer with its status, type, length and the headers already on Node's response", async () => {
    const res = await send(port, 'GET', '/json');
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength('{"ok":true}')));
    expect(res.headers['x-request-id']).toBe('req_1');
    expect(JSON.parse(res.body)).toEqual({ ok: true });
  });

  it('gives a string body the web default type and its length in bytes, and writes bytes as they are', async () => {
    const text = await send(port, 'GET', '/text');
    expect(text.headers['content-type']).toBe('text/plain;charset=UTF-8');
    expect(text.headers['content-length']).toBe(String(Buffer.byteLength('héllo')));
    expect(text.body).toBe('héllo');
    const bytes = await send(port, 'GET', '/bytes');
    expect(bytes.headers['x-kind']).toBe('bytes');
    expect([...Buffer.from(bytes.body, 'latin1')]).toEqual([1, 2, 3]);
  });

  it('streams any other body through a real Response', async () => {
    const res = await send(port, 'GET', '/stream');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/x-letters');
    expect(res.body).toBe('abc');
  });

  it('answers HEAD from the GET route, without a body', async () => {
    const res = await send(port, 'HEAD', '/json');
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toBe('');
  });

  it('writes nothing more when the route answered on Node itself', async () => {
    const res = await send(port, 'GET', '/self');
    expect(res.status).toBe(202);
    expect(res.body).toBe('written by the route');
    expect(res.headers['x-warren-already-sent']).toBeUndefined();
  });

  it("gives Hono the request's headers and body when a route asks the web request for them", async () => {
    const header = await new Promise<Answer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/header', headers: { 'X-Probe': 'p1' } }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(header.body).toBe('p1');
    const echo = await send(port, 'POST', '/echo', JSON.stringify({ a: [1, 2] }));
    expect(echo.status).toBe(200);
    expect(JSON.parse(echo.body)).toEqual({ a: [1, 2] });
  });

  it('keeps headers Hono set with c.header', async () => {
    const res = await send(port, 'GET', '/mutated');
    expect(res.headers['x-set-by']).toBe('hono');
    expect(res.body).toBe('with headers');
  });

  it('refuses a target that is not a path, and a backslash in the path, with 400', async () => {
    expect((await send(port, 'GET', 'http://elsewhere/json')).status).toBe(400);
    expect((await send(port, 'GET', '/json\\..\\x')).status).toBe(400);
    expect((await send(port, 'GET', '/json?q=a\\b')).status).toBe(201);
  });

  it('answers 500 and reports it when the handler itself throws, and keeps serving', async () => {
    const before = failures.length;
    expect((await send(port, 'GET', '/crash')).status).toBe(500);
    expect(failures.length).toBe(before + 1);
    expect((await send(port, 'GET', '/json')).status).toBe(201);
  });

  it("aborts the request's signal when the client goes away", async () => {
    const req = request({ host: '127.0.0.1', port, path: '/slow' });
    req.on('error', () => {});
    req.end();
    await new Promise((resolve) => setTimeout(resolve, 100));
    req.destroy();
    expect(await aborted).toBe(true);
  });
});

describe('LightResponse', () => {
  it('is a Response by instanceof, as are real ones, and delegates the rest to a real one', async () => {
    const light = new LightResponse('{"a":1}', { status: 202, headers: { 'content-type': 'application/json' } });
    expect(light instanceof LightResponse).toBe(true);
    expect(light.status).toBe(202);
    expect(light.ok).toBe(true);
    expect(light.headers.get('content-type')).toBe('application/json');
    expect(await light.json()).toEqual({ a: 1 });
    expect(light.bodyUsed).toBe(true);
    expect(Object.prototype.toString.call(light)).toBe('[object Response]');
    expect(light.native() instanceof LightResponse).toBe(true);
    expect({} instanceof LightResponse).toBe(false);
  });

  it('refuses what a real Response refuses', () => {
    expect(() => new LightResponse(null, { status: 99 })).toThrow(RangeError);
    expect(() => new LightResponse('body', { status: 204 })).toThrow(TypeError);
  });

  it('sees headers changed through .headers when it is written', () => {
    const light = new LightResponse('x', { headers: { a: '1' } });
    light.headers.set('b', '2');
    const plain = light.plain();
    expect(plain?.headers).toEqual(
      expect.arrayContaining([
        ['a', '1'],
        ['b', '2'],
        ['content-type', 'text/plain;charset=UTF-8'],
      ]),
    );
  });
});

describe('start cost', () => {
  it("serves a JSON answer and an error envelope without loading Node's undici (the point of this module)", () => {
    // A fresh process: the test runner itself has undici loaded.
    const here = (name: string) => JSON.stringify(fileURLToPath(new URL(name, import.meta.url)));
    const script = `
      const loaded = () => process.moduleLoadList.some((m) => m.includes('undici'));
      if (loaded()) { console.log('undici loaded before the test'); process.exit(3); }
      const { createServer, request } = await import('node:http');
      const { Hono } = await import('hono');
      const { requestListener } = await import(${here('./node-server.ts')});
      const { requestId } = await import(${here('./request-id.ts')});
      const { notFound } = await import(${here('./errors.ts')});
      const app = new Hono();
      app.use('*', requestId());
      app.notFound(notFound);
      app.get('/', (c) => c.json({ ok: 1 }));
      const server = createServer(requestListener(app.fetch, (e) => { console.log(String(e)); }));
      const get = (port, path) => new Promise((resolve) => {
        request({ host: '127.0.0.1', port, path }, (res) => {
          let body = '';
          res.on('data', (d) => { body += d; });
          res.on('end', () => resolve({ status: res.statusCode, body, id: res.headers['x-request-id'] ?? null }));
        }).end();
      });
      server.listen(0, '127.0.0.1', async () => {
        const { port } = server.address();
        const ok = await get(port, '/');
        const missing = await get(port, '/nope');
        console.log(JSON.stringify({
          ok: [ok.status, ok.body, /^req_/.test(ok.id)],
          missing: [missing.status, JSON.parse(missing.body).request_id === missing.id],
          undici: loaded(),
        }));
        server.close();
      });
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    expect(JSON.parse(out.trim().split('\n').pop() ?? '')).toEqual({
      ok: [200, '{"ok":1}', true],
      missing: [404, true],
      undici: false,
    });
  });
});
