import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/store.ts';

/** Query parameter a browser brings a preview token in; the gateway strips it before forwarding. */
export const PREVIEW_TOKEN_PARAM = 'warren_preview_token';
/** Cookie the gateway sets once a preview token was accepted from the URL. */
export const PREVIEW_COOKIE = 'warren_preview';
/** Longest lifetime of a preview token. */
export const PREVIEW_TOKEN_MAX_TTL_SECONDS = 7 * 86_400;

const TOKEN_VERSION = 'wpv1';

/** Whether a string has the shape of a preview token (not whether it is valid). */
export function isPreviewToken(token: string | undefined): token is string {
  return token?.startsWith(`${TOKEN_VERSION}.`) === true;
}

/** What a preview token grants: one port of one sandbox until `exp` (unix seconds). */
export interface PreviewClaims {
  sid: string;
  port: number;
  exp: number;
}

export type PreviewCheck = { ok: true; claims: PreviewClaims } | { ok: false; reason: 'malformed' | 'expired' };

/** Which sandbox port a preview request is for, and what to send it. */
export interface PreviewTarget {
  sandboxId: string;
  port: number;
  form: 'path' | 'host';
  /** `/sandboxes/{id}/ports/{port}` in the path form, `''` in the host form. */
  prefix: string;
  /** Path and query to send to the in-sandbox server (prefix and preview token removed). */
  forwardPath: string;
  /** A preview token found in the query string, if any. */
  queryToken: string | undefined;
  /** The request was for the bare prefix (no trailing slash): answered with a redirect to `prefix/`. */
  bare: boolean;
}

/** A preview request that cannot be served: the port is not a TCP port. */
export interface PreviewBadPort {
  badPort: string;
}

const PATH_RE = /^\/sandboxes\/([^/?#]+)\/ports\/([^/?#]*)([^?#]*)(\?[^#]*)?/;
const HOST_LABEL_RE = /^(\d{1,5})-([a-z0-9]{1,64})$/;

function validPort(raw: string): number | undefined {
  if (!/^\d{1,5}$/.test(raw)) return undefined;
  const port = Number(raw);
  return port >= 1 && port <= 65_535 ? port : undefined;
}

/** Splits a raw query (`?a=1&b=2`) into the preview token and the rest, byte for byte. */
function splitQuery(query: string | undefined): { token: string | undefined; rest: string } {
  if (!query || query === '?') return { token: undefined, rest: '' };
  let token: string | undefined;
  const kept: string[] = [];
  for (const part of query.slice(1).split('&')) {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    if (name === PREVIEW_TOKEN_PARAM) {
      token = decodeURIComponentSafe(eq === -1 ? '' : part.slice(eq + 1));
    } else {
      kept.push(part);
    }
  }
  return { token, rest: kept.length > 0 ? `?${kept.join('&')}` : '' };
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** Values of every `name=` cookie in a Cookie header, and the header without them. */
export function splitCookies(header: string | undefined, name: string): { values: string[]; rest: string | undefined } {
  if (!header) return { values: [], rest: undefined };
  const values: string[] = [];
  const kept: string[] = [];
  for (const raw of header.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) values.push(part.slice(eq + 1).trim());
    else kept.push(part);
  }
  return { values, rest: kept.length > 0 ? kept.join('; ') : undefined };
}

/**
 * Preview tokens and preview addressing. A preview token is
 * `wpv1.<base64url JSON {sid, port, exp}>.<base64url HMAC-SHA256(secret, "wpv1.<payload>")>`,
 * signed with a server secret of its own (meta `preview_secret`) that no
 * sandbox holds, so it is never accepted as a sandbox token and never minted
 * inside a sandbox.
 */
export class PreviewService {
  readonly #secret: Buffer;
  readonly #domain: string | undefined;
  readonly #publicHost: () => string;

  constructor(store: Store, options: { domain: string | undefined; publicHost: () => string }) {
    let hex = store.getMeta('preview_secret');
    if (hex === undefined) {
      hex = randomBytes(32).toString('hex');
      store.setMeta('preview_secret', hex);
    }
    this.#secret = Buffer.from(hex, 'hex');
    this.#domain = options.domain?.toLowerCase();
    this.#publicHost = options.publicHost;
  }

  #sign(payload: string): Buffer {
    return createHmac('sha256', this.#secret).update(`${TOKEN_VERSION}.${payload}`).digest();
  }

  /** A token for one port of one sandbox. */
  issue(sandboxId: string, port: number, ttlSeconds: number): { token: string; expiresAt: Date } {
    const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
    const claims: PreviewClaims = { sid: sandboxId, port, exp };
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const token = `${TOKEN_VERSION}.${payload}.${this.#sign(payload).toString('base64url')}`;
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** Checks signature and expiry; the caller compares `sid`/`port` with the request's. */
  verify(token: string, nowSeconds = Math.floor(Date.now() / 1000)): PreviewCheck {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== TOKEN_VERSION) return { ok: false, reason: 'malformed' };
    const [, payload, sig] = parts as [string, string, string];
    const expected = this.#sign(payload);
    const given = Buffer.from(sig, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return { ok: false, reason: 'malformed' };
    let claims: PreviewClaims;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as PreviewClaims;
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    if (typeof claims.sid !== 'string' || typeof claims.port !== 'number' || typeof claims.exp !== 'number')
      return { ok: false, reason: 'malformed' };
    if (claims.exp <= nowSeconds) return { ok: false, reason: 'expired' };
    return { ok: true, claims };
  }

  /** The configured preview domain (`WARREN_DOMAIN`), if any. */
  get domain(): string | undefined {
    return this.#domain;
  }

  /** Path-form base of a sandbox port: `/sandboxes/{id}/ports/{port}`. */
  static pathPrefix(sandboxId: string, port: number): string {
    return `/sandboxes/${sandboxId}/ports/${port}`;
  }

  /**
   * The URLs a browser opens: the path form (always) and the host form (when
   * `WARREN_DOMAIN` is set), each with the token in the query when given.
   */
  urls(sandboxId: string, port: number, token?: string): { pathURL: string; hostURL: string | undefined } {
    const query = token === undefined ? '' : `?${PREVIEW_TOKEN_PARAM}=${encodeURIComponent(token)}`;
    const base = new URL(this.#publicHost());
    const pathURL = `${base.origin}${PreviewService.pathPrefix(sandboxId, port)}/${query}`;
    if (this.#domain === undefined) return { pathURL, hostURL: undefined };
    const hostURL = `${base.protocol}//${port}-${sandboxId}.${this.#domain}${base.port ? `:${base.port}` : ''}/${query}`;
    return { pathURL, hostURL };
  }

  /**
   * Reads the preview target from a request: the host form
   * (`{port}-{id}.{WARREN_DOMAIN}`, path unchanged) when a domain is
   * configured, else the path form (`/sandboxes/{id}/ports/{port}/…`).
   * Returns undefined for anything else.
   */
  match(url: string, host: string | undefined): PreviewTarget | PreviewBadPort | undefined {
    if (this.#domain !== undefined && host !== undefined) {
      const name = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
      if (name.endsWith(`.${this.#domain}`)) {
        const m = HOST_LABEL_RE.exec(name.slice(0, -this.#domain.length - 1));
        if (m) {
          const port = validPort(m[1]!);
          if (port === undefined) return { badPort: m[1]! };
          const q = url.indexOf('?');
          const pathOnly = q === -1 ? url : url.slice(0, q);
          const { token, rest } = splitQuery(q === -1 ? undefined : url.slice(q));
          return {
            sandboxId: m[2]!,
            port,
            form: 'host',
            prefix: '',
            forwardPath: `${pathOnly || '/'}${rest}`,
            queryToken: token,
            bare: false,
          };
        }
      }
    }
    const m = PATH_RE.exec(url);
    if (!m) return undefined;
    const port = validPort(m[2]!);
    if (port === undefined) return { badPort: m[2]! };
    const sandboxId = m[1]!;
    const { token, rest } = splitQuery(m[4]);
    const tail = m[3] ?? '';
    return {
      sandboxId,
      port,
      form: 'path',
      prefix: PreviewService.pathPrefix(sandboxId, port),
      forwardPath: `${tail || '/'}${rest}`,
      queryToken: token,
      bare: tail === '',
    };
  }

  /** The `Set-Cookie` value that keeps a page authorised after it arrived with a token in its URL. */
  cookie(target: PreviewTarget, token: string, expSeconds: number, secure: boolean): string {
    const maxAge = Math.max(0, expSeconds - Math.floor(Date.now() / 1000));
    const path = target.form === 'path' ? target.prefix : '/';
    return `${PREVIEW_COOKIE}=${token}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
  }
}
