import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingHttpHeaders, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { agent, type CreatedSandbox, cp, createSandbox, deleteSandbox, sh } from './client.ts';
import { tracesAfterTeardown, tracesOf } from './leaks.ts';
import { removeTestNetwork, type ServerHandle, startServer, stopServer, testNetwork } from './server.ts';

const ctx = inject('warren');

/** An HTTP server that answers every request with what it received, as JSON; `/redirect` answers 302 to `/target`. */
const ECHO_PY = `
import hashlib, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def reply(self, body=b''):
        if self.path.startswith('/redirect'):
            self.send_response(302)
            self.send_header('Location', '/target')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        out = json.dumps({'method': self.command, 'path': self.path,
                          'headers': {k.lower(): v for k, v in self.headers.items()},
                          'body_len': len(body), 'body_sha256': hashlib.sha256(body).hexdigest()}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Set-Cookie', 'app=1; Path=/')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_GET(self): self.reply()
    def do_POST(self): self.reply(self.rfile.read(int(self.headers.get('Content-Length') or 0)))
    def log_message(self, *args): pass
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
`;

/** A WebSocket echo server with the standard library only: RFC 6455 handshake, text frames echoed, 'path' answers the request path. */
const WS_ECHO_PY = `
import base64, hashlib, socket, struct, sys, threading
GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
def serve(conn):
    with conn:
        data = b''
        while b'\\r\\n\\r\\n' not in data:
            chunk = conn.recv(4096)
            if not chunk: return
            data += chunk
        head, _, buf = data.partition(b'\\r\\n\\r\\n')
        lines = head.decode('latin-1').split('\\r\\n')
        path = lines[0].split(' ')[1]
        headers = dict((k.strip().lower(), v.strip()) for k, v in (l.split(':', 1) for l in lines[1:] if ':' in l))
        accept = base64.b64encode(hashlib.sha1((headers['sec-websocket-key'] + GUID).encode()).digest()).decode()
        conn.sendall(('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n'
                      'Sec-WebSocket-Accept: %s\\r\\n\\r\\n' % accept).encode())
        def need(n):
            nonlocal buf
            while len(buf) < n:
                chunk = conn.recv(4096)
                if not chunk: raise EOFError
                buf += chunk
            out, buf = buf[:n], buf[n:]
            return out
        def send(op, payload):
            n = len(payload)
            size = bytes([n]) if n < 126 else (bytes([126]) + struct.pack('>H', n) if n < 65536 else bytes([127]) + struct.pack('>Q', n))
            conn.sendall(bytes([0x80 | op]) + size + payload)
        try:
            while True:
                b1, b2 = need(2)
                op, n = b1 & 0x0F, b2 & 0x7F
                if n == 126: n = struct.unpack('>H', need(2))[0]
                elif n == 127: n = struct.unpack('>Q', need(8))[0]
                mask = need(4) if b2 & 0x80 else b'\\0\\0\\0\\0'
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(need(n)))
                if op == 8:
                    send(8, b'')
                    return
                if op == 9: send(10, payload)
                if op == 1: send(1, path.encode() if payload == b'path' else payload)
        except EOFError:
            return
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('0.0.0.0', int(sys.argv[1])))
srv.listen(16)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
`;

interface Raw {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A GET through node:http, so the Host header can be set (fetch does not allow it). */
function rawGet(baseURL: string, path: string, headers: Record<string, string>): Promise<Raw> {
  const url = new URL(baseURL);
  return new Promise((ok, fail) => {
    const req = request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        ok({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', fail);
    req.end();
  });
}

async function writeFile(sb: CreatedSandbox, path: string, content: string): Promise<void> {
  const r = await agent(sb, 'POST', '/files/write', { path, content });
  if (r.status !== 200) throw new Error(`write ${path}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** Starts a server in the sandbox in its own session, output to a log file. */
async function background(sb: CreatedSandbox, command: string, log: string): Promise<void> {
  const r = await sh(sb, `setsid ${command} > ${log} 2>&1 < /dev/null &`);
  expect(r.exit_code).toBe(0);
}

/** Waits until a request through the preview no longer answers 502 (the server is listening). */
async function waitListening(url: string, headers: Record<string, string>): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await fetch(url, { headers, redirect: 'manual' });
    await res.arrayBuffer();
    if (res.status !== 502) return;
    if (Date.now() > deadline) throw new Error(`nothing listens behind ${url}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/** Opens a WebSocket and resolves once it is open, or with the HTTP status it was refused with. */
function openWS(url: string, headers: Record<string, string> = {}): Promise<WebSocket | number> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => ok(ws));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ok(res.statusCode ?? 0);
    });
    ws.once('error', fail);
  });
}

function exchange(ws: WebSocket, text: string): Promise<string> {
  return new Promise((ok, fail) => {
    ws.once('message', (data) => ok(String(data)));
    ws.once('error', fail);
    ws.send(text);
  });
}

describe('port previews (path form) through the gateway', () => {
  let sb: CreatedSandbox;
  let auth: Record<string, string>;
  const portURL = (port: number, rest = '/') => `${ctx.baseURL}/sandboxes/${sb.id}/ports/${port}${rest}`;

  beforeAll(async () => {
    sb = await createSandbox({ template_name: 'base' });
    auth = { authorization: `Bearer ${sb.auth_token}` };
    await sh(sb, 'mkdir -p /workspace/site/sub /workspace/local');
    await writeFile(sb, '/workspace/site/index.html', '<h1>served from 0.0.0.0</h1>\n');
    await writeFile(sb, '/workspace/site/sub/page.txt', 'nested page\n');
    await writeFile(sb, '/workspace/local/index.html', '<h1>served from 127.0.0.1 only</h1>\n');
    await writeFile(sb, '/workspace/echo.py', ECHO_PY);
    await writeFile(sb, '/workspace/ws_echo.py', WS_ECHO_PY);
    await background(sb, 'python3 -m http.server 8000 --bind 0.0.0.0 --directory /workspace/site', '/tmp/h0.log');
    await background(sb, 'python3 -m http.server 8001 --bind 127.0.0.1 --directory /workspace/local', '/tmp/h1.log');
    await background(sb, 'python3 /workspace/echo.py 127.0.0.1 8002', '/tmp/echo.log');
    await background(sb, 'python3 /workspace/ws_echo.py 8765', '/tmp/ws.log');
    for (const port of [8000, 8001, 8002]) await waitListening(portURL(port), auth);
  });

  afterAll(async () => {
    if (!sb) return;
    await deleteSandbox(sb);
    expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
  });

  it('reaches a python http.server bound to 0.0.0.0, with the prefix stripped', async () => {
    const res = await fetch(portURL(8000, '/index.html'), { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('<h1>served from 0.0.0.0</h1>\n');
    const nested = await fetch(portURL(8000, '/sub/page.txt'), { headers: auth });
    expect(await nested.text()).toBe('nested page\n');
    // http.server redirects /sub to /sub/: the Location is rewritten under the prefix.
    const dir = await fetch(portURL(8000, '/sub'), { headers: auth, redirect: 'manual' });
    expect(dir.status).toBe(301);
    expect(dir.headers.get('location')).toBe(`/sandboxes/${sb.id}/ports/8000/sub/`);
    // The bare prefix redirects to prefix + '/', so relative links resolve.
    const bare = await fetch(portURL(8000, ''), { headers: auth, redirect: 'manual' });
    expect(bare.status).toBe(308);
    expect(bare.headers.get('location')).toBe(`/sandboxes/${sb.id}/ports/8000/`);
  });

  it('reaches a python http.server bound to 127.0.0.1 only', async () => {
    const res = await fetch(portURL(8001), { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('<h1>served from 127.0.0.1 only</h1>\n');
  });

  it('forwards method, path, query and body; sets X-Forwarded-*; keeps our credentials from the app', async () => {
    const body = Buffer.alloc(1024 * 1024, 'abc');
    const res = await fetch(portURL(8002, '/api/items?x=1&y=a%20b'), {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/octet-stream', cookie: 'theirs=2' },
      body,
    });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { method: string; path: string; headers: Record<string, string> } & {
      body_len: number;
      body_sha256: string;
    };
    expect(seen.method).toBe('POST');
    expect(seen.path).toBe('/api/items?x=1&y=a%20b');
    expect(seen.body_len).toBe(body.length);
    expect(seen.body_sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(seen.headers['x-forwarded-prefix']).toBe(`/sandboxes/${sb.id}/ports/8002`);
    expect(seen.headers['x-forwarded-host']).toBe(new URL(ctx.baseURL).host);
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers.cookie).toBe('theirs=2');
    // An absolute-path redirect from the app stays under the prefix.
    const redirect = await fetch(portURL(8002, '/redirect'), { headers: auth, redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`/sandboxes/${sb.id}/ports/8002/target`);
  });

  it('answers 401 without a valid token, 400 for a bad port, 502 when nothing listens', async () => {
    const none = await fetch(portURL(8000));
    expect(none.status).toBe(401);
    const body = (await none.json()) as { code: string; message: string; request_id: string };
    expect(body.code).toBe('TOKEN_INVALID');
    expect(body.message).toMatch(/preview token/);
    expect(body.request_id).toMatch(/^req_/);
    expect((await fetch(portURL(8000), { headers: { authorization: 'Bearer not-a-token' } })).status).toBe(401);
    // A valid token of this sandbox does not open another sandbox's ports.
    const other = await fetch(`${ctx.baseURL}/sandboxes/sbdoesnotexist00/ports/8000/`, { headers: auth });
    expect(other.status).toBe(401);
    for (const port of ['0', '70000', 'abc']) {
      const bad = await fetch(`${ctx.baseURL}/sandboxes/${sb.id}/ports/${port}/`, { headers: auth });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { code: string }).code).toBe('INVALID_REQUEST');
    }
    const closed = await fetch(portURL(9), { headers: auth });
    expect(closed.status).toBe(502);
    const closedBody = (await closed.json()) as { code: string; message: string };
    expect(closedBody.code).toBe('SANDBOX_UNAVAILABLE');
    expect(closedBody.message).toMatch(/port 9/);
  });

  it('a preview token in the URL works, sets a cookie for that port, and is not forwarded', async () => {
    const issued = await cp<{ token: string; url: string; path_url: string; expires_at: string; port: number }>(
      'POST',
      `/v1/sandboxes/${sb.id}/preview-token`,
      { port: 8002, ttl_seconds: 600 },
    );
    expect(issued.status).toBe(200);
    expect(issued.body.port).toBe(8002);
    expect(issued.body.url).toBe(portURL(8002, `/?warren_preview_token=${encodeURIComponent(issued.body.token)}`));
    expect(Date.parse(issued.body.expires_at) - Date.now()).toBeGreaterThan(500_000);

    const first = await fetch(`${issued.body.url}&keep=1`, { redirect: 'manual' });
    expect(first.status).toBe(200);
    const seen = (await first.json()) as { path: string; headers: Record<string, string> };
    expect(seen.path).toBe('/?keep=1');
    const cookies = first.headers.getSetCookie();
    expect(cookies).toContain('app=1; Path=/');
    const ours = cookies.find((c) => c.startsWith('warren_preview='));
    expect(ours).toBeDefined();
    expect(ours).toContain(`warren_preview=${issued.body.token};`);
    expect(ours).toContain(`Path=/sandboxes/${sb.id}/ports/8002;`);
    expect(ours).toMatch(/Max-Age=(59\d|600);/);
    expect(ours).toContain('HttpOnly');
    expect(ours).toContain('SameSite=Lax');

    // The page's next requests carry only the cookie; it is stripped before the app sees the request.
    const cookie = `warren_preview=${issued.body.token}; theirs=3`;
    const next = await fetch(portURL(8002, '/next'), { headers: { cookie } });
    expect(next.status).toBe(200);
    const nextSeen = (await next.json()) as { path: string; headers: Record<string, string> };
    expect(nextSeen.path).toBe('/next');
    expect(nextSeen.headers.cookie).toBe('theirs=3');
    // The token is scoped to its port and sandbox.
    expect((await fetch(portURL(8000), { headers: { cookie } })).status).toBe(401);
    expect((await fetch(portURL(8000, `/?warren_preview_token=${issued.body.token}`))).status).toBe(401);
    // It also works as a Bearer token (for non-browser clients).
    expect((await fetch(portURL(8002), { headers: { authorization: `Bearer ${issued.body.token}` } })).status).toBe(
      200,
    );
    // A tampered token is refused.
    const tampered = `${issued.body.token.slice(0, -2)}xx`;
    expect((await fetch(portURL(8002, `/?warren_preview_token=${tampered}`))).status).toBe(401);
  });

  it('the preview-token route needs the API key and validates its body', async () => {
    const noKey = await fetch(`${ctx.baseURL}/v1/sandboxes/${sb.id}/preview-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ port: 8000 }),
    });
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as { error: { code: string } }).error.code).toBe('AUTHENTICATION_REQUIRED');
    const unknown = await cp<{ error: { code: string } }>('POST', '/v1/sandboxes/sbdoesnotexist00/preview-token', {
      port: 8000,
    });
    expect(unknown.status).toBe(404);
    for (const body of [{}, { port: 0 }, { port: 65536 }, { port: '80' }, { port: 80, ttl_seconds: 10 }]) {
      const r = await cp<{ error: { code: string } }>('POST', `/v1/sandboxes/${sb.id}/preview-token`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('INVALID_REQUEST');
    }
    const notJSON = await cp<{ error: { code: string } }>('POST', `/v1/sandboxes/${sb.id}/preview-token`, undefined, {
      raw: '{',
    });
    expect(notJSON.status).toBe(400);
    expect(notJSON.body.error.code).toBe('INVALID_JSON');
  });

  it('pipes a WebSocket to an in-sandbox echo server (sandbox token or preview token)', async () => {
    const wsURL = portURL(8765, '/echo').replace(/^http/, 'ws');
    const ws = await openWS(wsURL, auth);
    expect(ws).toBeInstanceOf(WebSocket);
    const socket = ws as WebSocket;
    expect(await exchange(socket, 'hello through the tunnel')).toBe('hello through the tunnel');
    expect(await exchange(socket, 'path')).toBe('/echo');
    const big = 'x'.repeat(70_000);
    expect(await exchange(socket, big)).toBe(big);
    socket.close();

    expect(await openWS(wsURL)).toBe(401);
    const issued = await cp<{ token: string }>('POST', `/v1/sandboxes/${sb.id}/preview-token`, { port: 8765 });
    const viaToken = await openWS(`${wsURL}?warren_preview_token=${encodeURIComponent(issued.body.token)}&a=b`);
    expect(viaToken).toBeInstanceOf(WebSocket);
    expect(await exchange(viaToken as WebSocket, 'path')).toBe('/echo?a=b');
    (viaToken as WebSocket).close();
  });

  it('GET /v1/sandboxes/{id} reports the path-form preview base in preview_url', async () => {
    const info = await cp<{ preview_url: string | null; public_host: string }>('GET', `/v1/sandboxes/${sb.id}`);
    expect(info.body.preview_url).toBe(`${ctx.baseURL}/sandboxes/${sb.id}/ports/`);
    const res = await fetch(`${info.body.preview_url}8000/index.html`, { headers: auth });
    expect(await res.text()).toBe('<h1>served from 0.0.0.0</h1>\n');
  });

  it('a paused sandbox answers 409 and a deleted one 404, as the agent gateway does', async () => {
    const other = await createSandbox({ template_name: 'base' });
    const otherAuth = { authorization: `Bearer ${other.auth_token}` };
    const url = `${ctx.baseURL}/sandboxes/${other.id}/ports/8000/`;
    try {
      expect((await fetch(url, { headers: otherAuth })).status).toBe(502);
      expect((await cp('POST', `/v1/sandboxes/${other.id}/pause`)).status).toBe(200);
      const paused = await fetch(url, { headers: otherAuth });
      expect(paused.status).toBe(409);
      expect(((await paused.json()) as { code: string }).code).toBe('SANDBOX_PAUSED');
      expect(await openWS(url.replace(/^http/, 'ws'), otherAuth)).toBe(409);
      expect((await cp('POST', `/v1/sandboxes/${other.id}/resume`)).status).toBe(200);
    } finally {
      await deleteSandbox(other);
    }
    const gone = await fetch(url, { headers: otherAuth });
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { code: string }).code).toBe('SANDBOX_NOT_FOUND');
    expect(await tracesAfterTeardown(other.id, ctx)).toEqual([]);
  });
});

describe('port previews (host form) with WARREN_DOMAIN', () => {
  const domain = 'warren.localhost';
  const net = testNetwork(12 + Number(process.env.WARREN_TEST_SLOT ?? 0));
  let handle: ServerHandle | undefined;
  let dataDir: string;
  let sb: CreatedSandbox;

  const cpAt = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${handle!.baseURL}${path}`, {
      method,
      headers: { 'x-api-key': handle!.apiKey, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };

  beforeAll(async () => {
    dataDir = await mkdtemp('/var/tmp/warren-test-');
    handle = await startServer({
      dataDir,
      ...net,
      apiKey: 'wrn_test_previews_key_0123456789',
      env: { WARREN_DOMAIN: domain, WARREN_POOL: '0', WARREN_TEMPLATES: 'base' },
    });
    const created = await cpAt<CreatedSandbox>('POST', '/v1/sandboxes', { template_name: 'base' });
    expect(created.status).toBe(201);
    sb = created.body;
    await sh(sb, 'mkdir -p /workspace/site');
    await writeFile(sb, '/workspace/site/index.html', '<h1>host form</h1>\n');
    await writeFile(sb, '/workspace/echo.py', ECHO_PY);
    await background(sb, 'python3 -m http.server 8000 --bind 127.0.0.1 --directory /workspace/site', '/tmp/h.log');
    await background(sb, 'python3 /workspace/echo.py 0.0.0.0 3000', '/tmp/echo.log');
    await writeFile(sb, '/workspace/ws_echo.py', WS_ECHO_PY);
    await background(sb, 'python3 /workspace/ws_echo.py 8765', '/tmp/ws.log');
    for (const port of [8000, 3000])
      await waitListening(`${handle.baseURL}/sandboxes/${sb.id}/ports/${port}/`, {
        authorization: `Bearer ${sb.auth_token}`,
      });
  });

  afterAll(async () => {
    if (handle) {
      const id = sb?.id;
      await stopServer(handle, { deleteSandboxes: true });
      if (id) expect(await tracesOf(id, { dataDir, cgroupParent: net.cgroupParent, bridge: net.bridge })).toEqual([]);
    }
    await removeTestNetwork(net);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('{port}-{id}.{domain} reaches the port with the path unchanged', async () => {
    const port = new URL(handle!.baseURL).port;
    const host = (p: number) => `${p}-${sb.id}.${domain}:${port}`;
    const page = await rawGet(handle!.baseURL, '/index.html', {
      host: host(8000),
      authorization: `Bearer ${sb.auth_token}`,
    });
    expect(page.status).toBe(200);
    expect(page.body).toBe('<h1>host form</h1>\n');

    const echo = await rawGet(handle!.baseURL, '/v1/anything?q=1', {
      host: host(3000),
      authorization: `Bearer ${sb.auth_token}`,
    });
    expect(echo.status).toBe(200);
    const seen = JSON.parse(echo.body) as { path: string; headers: Record<string, string> };
    expect(seen.path).toBe('/v1/anything?q=1');
    expect(seen.headers['x-forwarded-host']).toBe(host(3000));
    expect(seen.headers['x-forwarded-prefix']).toBeUndefined();

    const anonymous = await rawGet(handle!.baseURL, '/', { host: host(8000) });
    expect(anonymous.status).toBe(401);
    expect((JSON.parse(anonymous.body) as { code: string }).code).toBe('TOKEN_INVALID');

    // The control plane on the server's own host is unaffected.
    expect((await cpAt('GET', `/v1/sandboxes/${sb.id}`)).status).toBe(200);
  });

  it('issues host-form preview URLs; the token sets a host-wide cookie', async () => {
    const port = new URL(handle!.baseURL).port;
    const issued = await cpAt<{ token: string; url: string; path_url: string; host_url: string }>(
      'POST',
      `/v1/sandboxes/${sb.id}/preview-token`,
      { port: 3000, ttl_seconds: 300 },
    );
    expect(issued.status).toBe(200);
    const expectedHost = `3000-${sb.id}.${domain}:${port}`;
    expect(issued.body.url).toBe(
      `http://${expectedHost}/?warren_preview_token=${encodeURIComponent(issued.body.token)}`,
    );
    expect(issued.body.host_url).toBe(issued.body.url);
    expect(issued.body.path_url).toContain(`/sandboxes/${sb.id}/ports/3000/`);

    const first = await rawGet(handle!.baseURL, `/page?warren_preview_token=${issued.body.token}`, {
      host: expectedHost,
    });
    expect(first.status).toBe(200);
    expect((JSON.parse(first.body) as { path: string }).path).toBe('/page');
    const ours = (first.headers['set-cookie'] ?? []).find((c) => c.startsWith('warren_preview='));
    expect(ours).toContain('Path=/;');
    expect(ours).not.toMatch(/Domain=/i);

    const next = await rawGet(handle!.baseURL, '/other', {
      host: expectedHost,
      cookie: `warren_preview=${issued.body.token}`,
    });
    expect(next.status).toBe(200);
    // Another port's host does not accept it.
    const wrong = await rawGet(handle!.baseURL, '/', {
      host: `8000-${sb.id}.${domain}:${port}`,
      cookie: `warren_preview=${issued.body.token}`,
    });
    expect(wrong.status).toBe(401);
  });

  it('pipes a WebSocket on the host form', async () => {
    const port = new URL(handle!.baseURL).port;
    const ws = await openWS(`ws://127.0.0.1:${port}/chat`, {
      host: `8765-${sb.id}.${domain}:${port}`,
      authorization: `Bearer ${sb.auth_token}`,
    });
    expect(ws).toBeInstanceOf(WebSocket);
    expect(await exchange(ws as WebSocket, 'path')).toBe('/chat');
    expect(await exchange(ws as WebSocket, 'ping over host form')).toBe('ping over host form');
    (ws as WebSocket).close();
  });

  it('preview_url is the path form on a server with a domain too', async () => {
    const info = await cpAt<{ preview_url: string }>('GET', `/v1/sandboxes/${sb.id}`);
    expect(info.body.preview_url).toBe(`${handle!.baseURL}/sandboxes/${sb.id}/ports/`);
  });
});
