import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, createServer as createTCPServer, type Server as TCPServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayServer } from './gateway.ts';
import { PreviewProxy } from './preview-proxy.ts';
import type { Driver } from './runtime/driver.ts';
import { PreviewService } from './services/previews.ts';
import type { Logger } from './services/sandboxes.ts';
import { TokenService } from './services/tokens.ts';
import type { SandboxRow, Store } from './store/store.ts';

const silent: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** Port the stand-in agent never answers a tunnel request for. */
const STUCK_PORT = 1;

function fakeStore(): Store {
  const meta = new Map<string, string>();
  return {
    getMeta: (k: string) => meta.get(k),
    setMeta: (k: string, v: string) => meta.set(k, v),
    getSandbox: (id: string) => ({ id, status: id === 'sbpaused' ? 'paused' : 'running' }) as SandboxRow,
  } as unknown as Store;
}

/**
 * A stand-in agent on a unix socket implementing the tunnel contract:
 * `GET /_warren/tunnel?port=N`, `Upgrade: warren-tunnel` → 101 and a raw pipe
 * to 127.0.0.1:N, or 502 with the error envelope.
 */
function fakeAgent(): Server {
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const port = Number(url.searchParams.get('port'));
    if (url.pathname !== '/_warren/tunnel' || req.headers.upgrade !== 'warren-tunnel' || !req.headers.authorization) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (port === STUCK_PORT) return;
    const upstream = connect({ host: '127.0.0.1', port });
    upstream.once('connect', () => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: warren-tunnel\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.once('error', () => {
      if (upstream.connecting || !socket.writable) return void socket.destroy();
      const body = JSON.stringify({
        error: `Cannot connect to port ${port}`,
        message: `Cannot connect to port ${port}`,
      });
      socket.end(
        `HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
    });
    upstream.once('close', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  return server;
}

describe('preview proxy (stand-in agent, real gateway)', () => {
  let dir: string;
  let gateway: Server;
  let base: string;
  let tokens: TokenService;
  let previews: PreviewService;
  let echoPort: number;
  let silentPort: number;
  let closedPort: number;
  const agent = fakeAgent();
  const echo = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const delay = req.url?.startsWith('/slow') ? 200 : 0;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ path: req.url, headers: req.headers, bytes: Buffer.concat(chunks).length }));
      }, delay);
    });
  });
  // Accepts connections and never answers.
  const silentServer: TCPServer = createTCPServer((s) => s.on('error', () => undefined));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-preview-'));
    await new Promise<void>((ok) => agent.listen(join(dir, 'agent.sock'), ok));
    await new Promise<void>((ok) => echo.listen(0, '127.0.0.1', ok));
    await new Promise<void>((ok) => silentServer.listen(0, '127.0.0.1', ok));
    echoPort = (echo.address() as AddressInfo).port;
    silentPort = (silentServer.address() as AddressInfo).port;
    const probe = createTCPServer();
    await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
    closedPort = (probe.address() as AddressInfo).port;
    await new Promise((ok) => probe.close(ok));

    const store = fakeStore();
    tokens = new TokenService(store, 86_400);
    const publicHost = () => base;
    previews = new PreviewService(store, { domain: undefined, publicHost });
    const driver = { agentSocket: () => join(dir, 'agent.sock') } as unknown as Driver;
    gateway = createGatewayServer({
      app: { fetch: () => new Response('control') },
      store,
      tokens,
      driver,
      log: silent,
      maxBodyBytes: 1024,
      previews: new PreviewProxy({
        store,
        driver,
        tokens,
        previews,
        log: silent,
        publicHost,
        limits: { maxConnectionsPerSandbox: 2, idleTimeoutMs: 300, connectTimeoutMs: 500, maxBodyBytes: 1000 },
      }),
    });
    await new Promise<void>((ok) => gateway.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    gateway.closeAllConnections();
    gateway.close();
    agent.close();
    echo.close();
    silentServer.close();
    await rm(dir, { recursive: true, force: true });
  });

  const auth = (sid = 'sbone') => ({ authorization: `Bearer ${tokens.issue(sid).token}` });
  const url = (port: number, rest = '/', sid = 'sbone') => `${base}/sandboxes/${sid}/ports/${port}${rest}`;

  it('forwards through the tunnel', async () => {
    const res = await fetch(url(echoPort, '/a?b=c'), { headers: auth() });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { path: string }).path).toBe('/a?b=c');
  });

  it('answers 413 for a body over the limit, declared or streamed', async () => {
    const declared = await fetch(url(echoPort), { method: 'POST', headers: auth(), body: 'x'.repeat(1001) });
    expect(declared.status).toBe(413);
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode('y'.repeat(100)));
        c.close();
      },
    });
    const streamed = await fetch(url(echoPort), {
      method: 'POST',
      headers: auth(),
      body: stream,
      duplex: 'half',
    } as RequestInit & { duplex: 'half' }).catch(() => undefined);
    // Either the 413 arrives or the connection is cut; the server stays up.
    if (streamed) expect(streamed.status).toBe(413);
    const small = await fetch(url(echoPort), { method: 'POST', headers: auth(), body: 'z'.repeat(1000) });
    expect(((await small.json()) as { bytes: number }).bytes).toBe(1000);
  });

  it('caps open connections per sandbox', async () => {
    const slow = [
      fetch(url(echoPort, '/slow'), { headers: auth() }),
      fetch(url(echoPort, '/slow'), { headers: auth() }),
    ];
    await new Promise((ok) => setTimeout(ok, 100));
    const third = await fetch(url(echoPort), { headers: auth() });
    expect(third.status).toBe(429);
    expect(((await third.json()) as { code: string }).code).toBe('RATE_LIMIT_EXCEEDED');
    // Another sandbox has its own budget.
    expect((await fetch(url(echoPort, '/', 'sbtwo'), { headers: auth('sbtwo') })).status).toBe(200);
    for (const r of await Promise.all(slow)) expect(r.status).toBe(200);
    expect((await fetch(url(echoPort), { headers: auth() })).status).toBe(200);
  });

  it('answers 502 when nothing listens, the tunnel stalls, or the server goes idle', async () => {
    const closed = await fetch(url(closedPort), { headers: auth() });
    expect(closed.status).toBe(502);
    expect(((await closed.json()) as { message: string }).message).toBe(`Cannot connect to port ${closedPort}`);
    const stuck = await fetch(url(STUCK_PORT), { headers: auth() });
    expect(stuck.status).toBe(502);
    expect(((await stuck.json()) as { message: string }).message).toMatch(/timed out/);
    const started = Date.now();
    const idle = await fetch(url(silentPort), { headers: auth() });
    expect(idle.status).toBe(502);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    // Every slot was released.
    const again = await Promise.all([1, 2].map(() => fetch(url(echoPort), { headers: auth() })));
    expect(again.map((r) => r.status)).toEqual([200, 200]);
  });

  it('answers 409 for a paused sandbox and 401 for a token of another sandbox', async () => {
    const paused = await fetch(url(echoPort, '/', 'sbpaused'), { headers: auth('sbpaused') });
    expect(paused.status).toBe(409);
    expect((await fetch(url(echoPort), { headers: auth('sbtwo') })).status).toBe(401);
  });

  it('never forwards a Warren token, even one for another sandbox', async () => {
    const { token } = previews.issue('sbone', echoPort, 60);
    const res = await fetch(url(echoPort), {
      headers: { ...auth('sbtwo'), cookie: `warren_preview=${token}; mine=1` },
    });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { headers: Record<string, string> };
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers.cookie).toBe('mine=1');
    // An app's own Authorization header passes through.
    const own = await fetch(url(echoPort), {
      headers: { authorization: 'Basic dXNlcjpwdw==', cookie: `warren_preview=${token}` },
    });
    expect(((await own.json()) as { headers: Record<string, string> }).headers.authorization).toBe(
      'Basic dXNlcjpwdw==',
    );
  });
});
