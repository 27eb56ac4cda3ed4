import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { agentErrorBody, controlErrorBody, ErrorCode, peekSandboxToken, ServiceError } from '@warren/protocol';
import { newRequestId } from './app.ts';
import type { Driver } from './runtime/driver.ts';
import type { Logger } from './services/sandboxes.ts';
import type { TokenService } from './services/tokens.ts';
import type { Store } from './store/store.ts';

export interface GatewayDeps {
  /** The control-plane app (anything with a fetch handler). */
  app: { fetch: (request: Request) => Response | Promise<Response> };
  store: Store;
  tokens: TokenService;
  driver: Driver;
  log: Logger;
  /** Largest control-plane request body. */
  maxBodyBytes: number;
}

/** Hop-by-hop headers a proxy must not forward. */
const HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
]);

function bearer(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
}

/**
 * Decides where a request goes: the control plane (`/v1/*`, and `/health`
 * without a sandbox token) or a sandbox agent, chosen by the sandbox token
 * it carries. Returns the socket of the agent, or a ServiceError to answer.
 */
function routeToAgent(
  deps: GatewayDeps,
  req: IncomingMessage,
): { kind: 'control' } | { kind: 'agent'; socketPath: string } | { kind: 'error'; error: ServiceError } {
  const path = req.url ?? '/';
  if (path.startsWith('/v1/') || path === '/v1') return { kind: 'control' };
  const token = bearer(req);
  const claims = token === undefined ? undefined : peekSandboxToken(token);
  if (!claims) {
    if (path === '/health' || path.startsWith('/health?')) return { kind: 'control' };
    return {
      kind: 'error',
      error: new ServiceError(
        ErrorCode.TOKEN_INVALID,
        'A sandbox token is required (Authorization: Bearer <auth_token>)',
      ),
    };
  }
  const check = deps.tokens.verify(token!, claims.sid);
  if (!check.ok) {
    return {
      kind: 'error',
      error:
        check.reason === 'expired'
          ? new ServiceError(ErrorCode.TOKEN_EXPIRED, 'Token expired')
          : new ServiceError(ErrorCode.TOKEN_INVALID, 'Invalid sandbox token'),
    };
  }
  const sandbox = deps.store.getSandbox(claims.sid);
  const notFound = new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${claims.sid} not found`);
  if (!sandbox) return { kind: 'error', error: notFound };
  switch (sandbox.status) {
    case 'running':
      return { kind: 'agent', socketPath: deps.driver.agentSocket(sandbox.id) };
    case 'paused':
      return { kind: 'error', error: new ServiceError(ErrorCode.SANDBOX_PAUSED, `Sandbox ${sandbox.id} is paused`) };
    case 'creating':
      return {
        kind: 'error',
        error: new ServiceError(ErrorCode.SANDBOX_CREATING, `Sandbox ${sandbox.id} is starting`),
      };
    case 'stopped':
      return { kind: 'error', error: new ServiceError(ErrorCode.SANDBOX_STOPPED, `Sandbox ${sandbox.id} is stopped`) };
    default:
      return { kind: 'error', error: notFound };
  }
}

function sendError(res: ServerResponse, err: ServiceError, envelope = agentErrorBody): void {
  const requestId = newRequestId();
  const body = JSON.stringify(envelope(err, requestId));
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  });
  res.end(body);
}

function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_HEADERS.has(k)) out[k] = v;
  }
  return out;
}

/** Most a client may send after its request was already answered, before its connection is cut. */
const MAX_DRAIN_BYTES = 1024 * 1024 * 1024;
const MAX_DRAIN_MS = 60_000;

/**
 * Reads and discards the rest of a request body the server already answered
 * (e.g. with 413), so the client reads the answer instead of a reset
 * connection; bounded in bytes and time.
 */
function drainRequest(req: IncomingMessage, done: () => void): void {
  if (req.complete) return done();
  let seen = 0;
  const timer = setTimeout(() => req.socket.destroy(), MAX_DRAIN_MS);
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > MAX_DRAIN_BYTES) req.socket.destroy();
  });
  req.once('end', () => {
    clearTimeout(timer);
    done();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

/** Streams one HTTP request to the agent's unix socket and the answer back. */
function proxyHttp(deps: GatewayDeps, req: IncomingMessage, res: ServerResponse, socketPath: string): void {
  let answered = false;
  const upstream = request(
    { socketPath, method: req.method, path: req.url, headers: forwardHeaders(req.headers) },
    (agentRes) => {
      answered = true;
      const headers = forwardHeaders(agentRes.headers);
      const respond = () => {
        res.writeHead(agentRes.statusCode ?? 502, headers);
        agentRes.pipe(res);
      };
      if (req.complete) return respond();
      // The agent answered before reading the whole body (e.g. 413): discard the rest, then answer.
      req.unpipe(upstream);
      agentRes.once('end', () => upstream.destroy());
      drainRequest(req, respond);
    },
  );
  upstream.on('error', (err) => {
    if (answered) return;
    deps.log.warn(`gateway: agent at ${socketPath} failed: ${err.message}`);
    if (!res.headersSent) {
      sendError(res, new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, 'Sandbox agent is not reachable'));
    } else {
      res.destroy();
    }
  });
  req.on('aborted', () => upstream.destroy());
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/** Forwards a WebSocket upgrade to the agent as raw bytes, both ways. */
function proxyUpgrade(deps: GatewayDeps, req: IncomingMessage, socket: Duplex, head: Buffer, socketPath: string): void {
  const upstream = connect(socketPath);
  upstream.on('connect', () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  const close = () => {
    upstream.destroy();
    socket.destroy();
  };
  upstream.on('error', (err) => {
    deps.log.warn(`gateway: websocket to ${socketPath} failed: ${err.message}`);
    close();
  });
  socket.on('error', close);
  socket.on('close', () => upstream.destroy());
  upstream.on('close', () => socket.destroy());
}

function rejectUpgrade(socket: Duplex, err: ServiceError): void {
  const body = JSON.stringify(agentErrorBody(err, newRequestId()));
  socket.end(
    `HTTP/1.1 ${err.status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * The one HTTP server: control plane and agent gateway on one origin. Agent
 * requests (HTTP and WebSocket) are routed by the sandbox token they carry.
 */
export function createGatewayServer(deps: GatewayDeps): Server {
  const controlListener = getRequestListener(deps.app.fetch);
  const server = createServer((req, res) => {
    const route = routeToAgent(deps, req);
    if (route.kind === 'control') {
      if (Number(req.headers['content-length'] ?? 0) > deps.maxBodyBytes) {
        const tooLarge = new ServiceError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `Request body exceeds ${deps.maxBodyBytes} bytes`,
        );
        return drainRequest(req, () => sendError(res, tooLarge, controlErrorBody));
      }
      void controlListener(req, res);
    } else if (route.kind === 'agent') {
      proxyHttp(deps, req, res, route.socketPath);
    } else {
      req.resume();
      sendError(res, route.error);
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const route = routeToAgent(deps, req);
    if (route.kind === 'agent') proxyUpgrade(deps, req, socket, head, route.socketPath);
    else
      rejectUpgrade(
        socket,
        route.kind === 'error' ? route.error : new ServiceError(ErrorCode.NOT_FOUND, 'No WebSocket here'),
      );
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });
  return server;
}
