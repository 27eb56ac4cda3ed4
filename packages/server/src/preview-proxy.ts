import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode, peekSandboxToken, ServiceError } from '@warren/protocol';
import { bearer, drainRequest, forwardHeaders, rejectUpgrade, sendError } from './internal/proxy-http.ts';
import { agentSocketOf } from './internal/sandbox-socket.ts';
import { openTunnel } from './internal/tunnel.ts';
import type { Driver } from './runtime/driver.ts';
import {
  isPreviewToken,
  PREVIEW_COOKIE,
  type PreviewService,
  type PreviewTarget,
  splitCookies,
} from './services/previews.ts';
import type { Logger } from './services/sandboxes.ts';
import type { TokenService } from './services/tokens.ts';
import type { Store } from './store/store.ts';

/** Limits of the preview proxy. */
export interface PreviewLimits {
  /** Open preview connections (HTTP requests in flight plus WebSockets) per sandbox. */
  maxConnectionsPerSandbox: number;
  /** A preview connection with no traffic either way for this long is closed. */
  idleTimeoutMs: number;
  /** Time to open the tunnel to the port. */
  connectTimeoutMs: number;
  /** Largest request body forwarded to an in-sandbox server. */
  maxBodyBytes: number;
}

export const PREVIEW_DEFAULT_LIMITS: Omit<PreviewLimits, 'maxConnectionsPerSandbox'> = {
  idleTimeoutMs: 10 * 60_000,
  connectTimeoutMs: 10_000,
  maxBodyBytes: 100 * 1024 * 1024,
};

export interface PreviewProxyDeps {
  store: Store;
  driver: Driver;
  tokens: TokenService;
  previews: PreviewService;
  log: Logger;
  limits: PreviewLimits;
  /** The public origin; its scheme is sent as `X-Forwarded-Proto` and decides `Secure` cookies. */
  publicHost: () => string;
}

/** How a preview request proved it may reach the port. */
interface Grant {
  /** `Authorization` carried a Warren token (valid here or not): it is not forwarded. */
  consumedAuthorization: boolean;
  /** `Set-Cookie` to add to the answer (the token came in the URL). */
  setCookie: string | undefined;
}

/** Counts open preview connections per sandbox. */
class ConnectionLimiter {
  readonly #open = new Map<string, number>();

  /** A release function, or undefined when the sandbox is at its limit. */
  acquire(sandboxId: string, max: number): (() => void) | undefined {
    const n = this.#open.get(sandboxId) ?? 0;
    if (n >= max) return undefined;
    this.#open.set(sandboxId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(sandboxId) ?? 1) - 1;
      if (left <= 0) this.#open.delete(sandboxId);
      else this.#open.set(sandboxId, left);
    };
  }
}

/**
 * The port preview proxy: authorises a request for `{sandbox, port}`, opens
 * the agent's tunnel to that port and speaks HTTP/1.1 (or pipes a WebSocket
 * upgrade) through it.
 */
export class PreviewProxy {
  readonly #deps: PreviewProxyDeps;
  readonly #limiter = new ConnectionLimiter();

  constructor(deps: PreviewProxyDeps) {
    this.#deps = deps;
  }

  /** The preview target of a request, a 400 for a bad port, or undefined if it is not a preview request. */
  match(req: IncomingMessage): PreviewTarget | ServiceError | undefined {
    const m = this.#deps.previews.match(req.url ?? '/', req.headers.host);
    if (m === undefined) return undefined;
    if ('badPort' in m)
      return new ServiceError(ErrorCode.INVALID_REQUEST, `Invalid port '${m.badPort}': expected 1 to 65535`);
    return m;
  }

  #secure(): boolean {
    return this.#deps.publicHost().startsWith('https:');
  }

  /** Checks the sandbox token, preview token (Bearer, query) or preview cookie against the target. */
  #authorize(req: IncomingMessage, target: PreviewTarget): Grant | ServiceError {
    const { previews, tokens } = this.#deps;
    let expired = false;
    const previewOK = (token: string) => {
      const check = previews.verify(token);
      if (!check.ok) {
        if (check.reason === 'expired') expired = true;
        return undefined;
      }
      return check.claims.sid === target.sandboxId && check.claims.port === target.port ? check.claims : undefined;
    };
    const given = bearer(req);
    const claims = given === undefined ? undefined : peekSandboxToken(given);
    // A Warren token is never passed on to the app, whichever sandbox it is for.
    const ours = claims !== undefined || isPreviewToken(given);
    if (given !== undefined) {
      if (claims?.sid === target.sandboxId) {
        const check = tokens.verify(given, target.sandboxId);
        if (check.ok) return { consumedAuthorization: true, setCookie: undefined };
        if (check.reason === 'expired') expired = true;
      } else if (isPreviewToken(given) && previewOK(given)) {
        return { consumedAuthorization: true, setCookie: undefined };
      }
    }
    if (target.queryToken !== undefined) {
      const query = previewOK(target.queryToken);
      if (query) {
        return {
          consumedAuthorization: ours,
          setCookie: previews.cookie(target, target.queryToken, query.exp, this.#secure()),
        };
      }
    }
    for (const value of splitCookies(req.headers.cookie, PREVIEW_COOKIE).values) {
      if (previewOK(value)) return { consumedAuthorization: ours, setCookie: undefined };
    }
    return expired
      ? new ServiceError(ErrorCode.TOKEN_EXPIRED, 'Preview token expired')
      : new ServiceError(
          ErrorCode.TOKEN_INVALID,
          `A sandbox token (Authorization: Bearer) or a preview token (?warren_preview_token=) for port ${target.port} of sandbox ${target.sandboxId} is required`,
        );
  }

  /** Authorisation, then the sandbox's state: the agent socket, or the error to answer. */
  #admit(req: IncomingMessage, target: PreviewTarget): { grant: Grant; socketPath: string } | ServiceError {
    const grant = this.#authorize(req, target);
    if (grant instanceof ServiceError) return grant;
    const where = agentSocketOf(this.#deps, target.sandboxId);
    if (!where.ok) return where.error;
    return { grant, socketPath: where.socketPath };
  }

  /** Request headers for the in-sandbox server: ours removed, `X-Forwarded-*` set. */
  #upstreamHeaders(req: IncomingMessage, target: PreviewTarget, grant: Grant): Record<string, string | string[]> {
    const headers = forwardHeaders(req.headers);
    if (grant.consumedAuthorization) delete headers.authorization;
    const cookies = splitCookies(req.headers.cookie, PREVIEW_COOKIE);
    if (cookies.rest === undefined) delete headers.cookie;
    else headers.cookie = cookies.rest;
    delete headers['x-forwarded-prefix'];
    headers['x-forwarded-host'] = req.headers.host ?? '';
    headers['x-forwarded-proto'] = this.#secure() ? 'https' : 'http';
    if (target.prefix !== '') headers['x-forwarded-prefix'] = target.prefix;
    const client = req.socket.remoteAddress ?? '';
    const prior = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${prior}, ${client}` : client;
    return headers;
  }

  /** Proxies one HTTP request to the sandbox port. */
  http(req: IncomingMessage, res: ServerResponse, target: PreviewTarget): void {
    const admitted = this.#admit(req, target);
    if (admitted instanceof ServiceError) {
      req.resume();
      sendError(res, admitted);
      return;
    }
    const { grant, socketPath } = admitted;
    const cookieHeader: Record<string, string> = grant.setCookie === undefined ? {} : { 'set-cookie': grant.setCookie };
    if (target.bare) {
      // `/sandboxes/{id}/ports/{port}` → `…/{port}/`, so relative links in the page resolve under the prefix.
      req.resume();
      res.writeHead(308, { ...cookieHeader, location: `${target.prefix}${target.forwardPath}`, 'content-length': 0 });
      res.end();
      return;
    }
    const { limits } = this.#deps;
    if (Number(req.headers['content-length'] ?? 0) > limits.maxBodyBytes) {
      const tooLarge = new ServiceError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `Request body exceeds ${limits.maxBodyBytes} bytes`,
      );
      drainRequest(req, () => sendError(res, tooLarge));
      return;
    }
    const release = this.#limiter.acquire(target.sandboxId, limits.maxConnectionsPerSandbox);
    if (!release) {
      req.resume();
      sendError(
        res,
        new ServiceError(
          ErrorCode.RATE_LIMIT_EXCEEDED,
          `Too many open preview connections to sandbox ${target.sandboxId}`,
        ),
      );
      return;
    }
    let clientGone = false;
    res.once('close', () => {
      clientGone = true;
    });
    const { token } = this.#deps.tokens.issue(target.sandboxId, 300);
    openTunnel(socketPath, token, target.port, { timeoutMs: limits.connectTimeoutMs }).then(
      (tunnel) => {
        tunnel.once('close', release);
        if (clientGone) {
          tunnel.destroy();
          return;
        }
        this.#forwardHttp(req, res, target, grant, tunnel, cookieHeader);
      },
      (err: unknown) => {
        release();
        req.resume();
        if (clientGone || res.headersSent) return;
        sendError(
          res,
          err instanceof ServiceError ? err : new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, 'Tunnel failed'),
        );
      },
    );
  }

  #forwardHttp(
    req: IncomingMessage,
    res: ServerResponse,
    target: PreviewTarget,
    grant: Grant,
    tunnel: Socket,
    cookieHeader: Record<string, string>,
  ): void {
    const { limits, log } = this.#deps;
    tunnel.setTimeout(limits.idleTimeoutMs, () => tunnel.destroy());
    const upstream = request(
      {
        createConnection: () => tunnel,
        method: req.method,
        path: target.forwardPath,
        headers: { ...this.#upstreamHeaders(req, target, grant), connection: 'close' },
      },
      (upRes) => {
        const headers = forwardHeaders(upRes.headers);
        const location = upRes.headers.location;
        if (target.prefix !== '' && location?.startsWith('/') && !location.startsWith('//'))
          headers.location = `${target.prefix}${location}`;
        if (cookieHeader['set-cookie'] !== undefined) {
          const existing = upRes.headers['set-cookie'] ?? [];
          headers['set-cookie'] = [...existing, cookieHeader['set-cookie']];
        }
        res.writeHead(upRes.statusCode ?? 502, headers);
        upRes.pipe(res);
        upRes.once('error', () => res.destroy());
      },
    );
    let sent = 0;
    req.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (sent > limits.maxBodyBytes) {
        req.unpipe(upstream);
        upstream.destroy();
        if (!res.headersSent) {
          const tooLarge = new ServiceError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            `Request body exceeds ${limits.maxBodyBytes} bytes`,
          );
          sendError(res, tooLarge, undefined, { connection: 'close' });
        }
        req.socket.destroy();
      }
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) {
        log.warn(`preview ${target.sandboxId}:${target.port}: ${err.message}`);
        sendError(
          res,
          new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, `The server on port ${target.port} closed the connection`),
        );
      } else {
        res.destroy();
      }
    });
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
      tunnel.destroy();
    });
    req.pipe(upstream);
  }

  /** Proxies a WebSocket (or any HTTP upgrade) to the sandbox port: the request through the tunnel, then raw bytes. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: PreviewTarget): void {
    const admitted = this.#admit(req, target);
    if (admitted instanceof ServiceError) {
      rejectUpgrade(socket, admitted);
      return;
    }
    const { grant, socketPath } = admitted;
    const { limits } = this.#deps;
    const release = this.#limiter.acquire(target.sandboxId, limits.maxConnectionsPerSandbox);
    if (!release) {
      rejectUpgrade(
        socket,
        new ServiceError(
          ErrorCode.RATE_LIMIT_EXCEEDED,
          `Too many open preview connections to sandbox ${target.sandboxId}`,
        ),
      );
      return;
    }
    const { token } = this.#deps.tokens.issue(target.sandboxId, 300);
    openTunnel(socketPath, token, target.port, { timeoutMs: limits.connectTimeoutMs }).then(
      (tunnel) => {
        tunnel.once('close', release);
        if (socket.destroyed) {
          tunnel.destroy();
          return;
        }
        const headers = this.#upstreamHeaders(req, target, grant);
        const lines = [`${req.method} ${target.forwardPath} HTTP/1.1`];
        // The handshake headers are hop-by-hop but are what the upgrade is made of.
        for (const name of ['connection', 'upgrade'] as const) {
          const v = req.headers[name];
          if (v !== undefined) lines.push(`${name}: ${v}`);
        }
        for (const [name, value] of Object.entries(headers)) {
          for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
        }
        tunnel.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (head.length > 0) tunnel.write(head);
        const close = () => {
          tunnel.destroy();
          socket.destroy();
        };
        tunnel.setTimeout(limits.idleTimeoutMs, close);
        (socket as Socket).setTimeout?.(limits.idleTimeoutMs, close);
        tunnel.on('error', close);
        socket.on('error', close);
        tunnel.once('close', close);
        socket.once('close', close);
        tunnel.pipe(socket);
        socket.pipe(tunnel);
      },
      (err: unknown) => {
        release();
        rejectUpgrade(
          socket,
          err instanceof ServiceError ? err : new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, 'Tunnel failed'),
        );
      },
    );
  }
}
