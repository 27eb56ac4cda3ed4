import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { controlErrorBody, ErrorCode, peekSandboxToken, ServiceError } from '@warren/protocol';
import { bearer, drainRequest, forwardHeaders, readBody, rejectUpgrade, sendError } from './internal/proxy-http.ts';
import { agentSocketOf } from './internal/sandbox-socket.ts';
import type { PreviewProxy } from './preview-proxy.ts';
import { parse } from './routes/control.ts';
import type { Driver } from './runtime/driver.ts';
import type { Logger } from './services/sandboxes.ts';
import type { TokenService } from './services/tokens.ts';
import { type AsyncExecutionService, asyncExecuteRequestSchema } from './services/webhooks.ts';
import type { Store } from './store/store.ts';

export interface GatewayDeps {
  /** The control-plane app (anything with a fetch handler). */
  app: { fetch: (request: Request) => Response | Promise<Response> };
  store: Store;
  tokens: TokenService;
  driver: Driver;
  log: Logger;
  /** Largest control-plane request body (also the largest `/execute/async` body). */
  maxBodyBytes: number;
  /** Port previews (`/sandboxes/{id}/ports/{port}/…` and `{port}-{id}.{domain}`); none when absent. */
  previews?: PreviewProxy;
  /** `POST /execute/async`, run by the server; forwarded to the agent when absent. */
  executions?: AsyncExecutionService;
}

type Route =
  | { kind: 'control' }
  | { kind: 'agent'; sandboxId: string; socketPath: string }
  | { kind: 'error'; error: ServiceError };

/**
 * Decides where a non-preview request goes: the control plane (`/v1/*`, and
 * `/health` without a sandbox token) or a sandbox agent, chosen by the
 * sandbox token it carries.
 */
function routeToAgent(deps: GatewayDeps, req: IncomingMessage): Route {
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
  const where = agentSocketOf(deps, claims.sid);
  return where.ok
    ? { kind: 'agent', sandboxId: claims.sid, socketPath: where.socketPath }
    : { kind: 'error', error: where.error };
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

function isAsyncExecute(req: IncomingMessage): boolean {
  const url = req.url ?? '/';
  return url === '/execute/async' || url.startsWith('/execute/async?');
}

/**
 * `POST /execute/async` for an authorised running sandbox: validates the
 * body, queues the execution, answers 200 `queued` at once.
 */
async function handleAsyncExecute(
  deps: GatewayDeps & { executions: AsyncExecutionService },
  req: IncomingMessage,
  res: ServerResponse,
  sandboxId: string,
): Promise<void> {
  if (req.method !== 'POST') {
    req.resume();
    return sendError(res, new ServiceError(ErrorCode.METHOD_NOT_ALLOWED, 'Use POST /execute/async'), undefined, {
      allow: 'POST',
    });
  }
  const raw = await readBody(req, deps.maxBodyBytes);
  if (raw === undefined) {
    return sendError(
      res,
      new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, `Request body exceeds ${deps.maxBodyBytes} bytes`),
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    return sendError(res, new ServiceError(ErrorCode.INVALID_JSON, 'Request body is not valid JSON'));
  }
  const accepted = deps.executions.submit(sandboxId, parse(asyncExecuteRequestSchema, json));
  const body = JSON.stringify(accepted);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * The one HTTP server: control plane, agent gateway and port previews on one
 * origin. Agent requests (HTTP and WebSocket) are routed by the sandbox token
 * they carry; preview requests by their path or host.
 */
export function createGatewayServer(deps: GatewayDeps): Server {
  const controlListener = getRequestListener(deps.app.fetch);
  const server = createServer((req, res) => {
    const preview = deps.previews?.match(req);
    if (preview instanceof ServiceError) {
      req.resume();
      return sendError(res, preview);
    }
    if (preview !== undefined) return deps.previews!.http(req, res, preview);

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
      const executions = deps.executions;
      if (executions && isAsyncExecute(req)) {
        handleAsyncExecute({ ...deps, executions }, req, res, route.sandboxId).catch((err: unknown) => {
          const se =
            err instanceof ServiceError ? err : new ServiceError(ErrorCode.INTERNAL_ERROR, 'Internal server error');
          if (!(err instanceof ServiceError)) deps.log.error(`gateway: /execute/async: ${(err as Error).stack}`);
          if (!res.headersSent) sendError(res, se);
          else res.destroy();
        });
        return;
      }
      proxyHttp(deps, req, res, route.socketPath);
    } else {
      req.resume();
      sendError(res, route.error);
    }
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const preview = deps.previews?.match(req);
    if (preview instanceof ServiceError) return rejectUpgrade(socket, preview);
    if (preview !== undefined) return deps.previews!.upgrade(req, socket, head, preview);
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
