import WebSocket from 'ws';
import type { ClientConfig } from './config.ts';
import { APIError, CLIError, ConnectionError } from './errors.ts';

/** Control-plane calls give up after this long (creating a sandbox boots it). */
const CONTROL_TIMEOUT_MS = 120_000;

/** The sandbox fields the CLI reads (PROTOCOL §6). */
export interface SandboxInfo {
  id: string;
  status: string;
  public_host: string;
  preview_url?: string | null;
  template_name?: string | null;
  template_id?: string | null;
  created_at?: string;
  expires_at?: string | null;
  timeout_seconds?: number | null;
  internet_access?: boolean | null;
  resources?: { vcpu: number; memory_mb: number; disk_mb: number } | null;
  [key: string]: unknown;
}

/** A page of `GET /v1/sandboxes`. */
export interface SandboxPage {
  data: SandboxInfo[] | null;
  has_more: boolean;
  next_cursor: string | null;
}

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

async function send(url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new CLIError(`${what} timed out`, { cause: err });
    if ((err as Error).name === 'AbortError') throw err;
    throw new ConnectionError(new URL(url).origin, err);
  }
}

/** Talks to the Warren control plane with an API key. */
export class Client {
  readonly config: ClientConfig;

  constructor(config: ClientConfig) {
    this.config = config;
  }

  /** Headers that authenticate a control-plane request. */
  authHeaders(): Record<string, string> {
    if (this.config.apiKey === undefined) {
      throw new CLIError(
        'no API key: pass --api-key, set WARREN_API_KEY, or put "apiKey" in the config file (see warren --help)',
      );
    }
    return { 'x-api-key': this.config.apiKey };
  }

  /**
   * A control-plane request; returns the parsed JSON body.
   * @throws APIError for an error answer, ConnectionError when the server is unreachable.
   */
  async request<T>(
    method: string,
    path: string,
    options: { body?: unknown; query?: Record<string, string | undefined>; signal?: AbortSignal } = {},
  ): Promise<T> {
    const url = new URL(`${this.config.url}${path}`);
    for (const [k, v] of Object.entries(options.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const res = await send(
      url.toString(),
      {
        method,
        headers: { ...this.authHeaders(), 'content-type': 'application/json' },
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        signal: options.signal ?? AbortSignal.timeout(CONTROL_TIMEOUT_MS),
      },
      `${method} ${path}`,
    );
    const body = await readBody(res);
    if (!res.ok) throw APIError.from(res.status, body, res.headers);
    return body as T;
  }

  /** One sandbox. @throws APIError 404 when it does not exist. */
  sandbox(id: string): Promise<SandboxInfo> {
    return this.request<SandboxInfo>('GET', `/v1/sandboxes/${encodeURIComponent(id)}`);
  }

  /** Every sandbox of the key, page by page. */
  async *sandboxes(filter: { status?: string } = {}): AsyncIterable<SandboxInfo> {
    let cursor: string | undefined;
    do {
      const page: SandboxPage = await this.request<SandboxPage>('GET', '/v1/sandboxes', {
        query: { limit: '100', status: filter.status, cursor },
      });
      yield* page.data ?? [];
      cursor = page.has_more && page.next_cursor ? page.next_cursor : undefined;
    } while (cursor);
  }

  /** A client for a sandbox's agent, with a fresh token. */
  async agent(id: string): Promise<AgentClient> {
    const sandbox = await this.sandbox(id);
    const { auth_token } = await this.request<{ auth_token: string }>(
      'POST',
      `/v1/sandboxes/${encodeURIComponent(id)}/token/refresh`,
    );
    return new AgentClient(sandbox, auth_token);
  }
}

/** Talks to one sandbox's agent through the server (`public_host`, Bearer sandbox token). */
export class AgentClient {
  readonly sandbox: SandboxInfo;
  readonly #token: string;

  constructor(sandbox: SandboxInfo, token: string) {
    this.sandbox = sandbox;
    this.#token = token;
  }

  #url(path: string): string {
    return `${this.sandbox.public_host.replace(/\/+$/, '')}${path}`;
  }

  /**
   * A raw agent request; the response is returned unread when it is a 2xx.
   * @throws APIError for an error answer.
   */
  async fetch(path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
    const res = await send(
      this.#url(path),
      { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${this.#token}` } },
      `${init.method ?? 'GET'} ${path}`,
    );
    if (!res.ok) throw APIError.from(res.status, await readBody(res), res.headers);
    return res;
  }

  /** An agent request with a JSON body and answer. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(path, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    return (await res.json()) as T;
  }

  /**
   * Opens an agent WebSocket (`/terminal`, `/commands/stream`, …). WebSocket
   * paths live at the root of the `public_host` origin (PROTOCOL §11.1).
   * Resolves once the socket is open.
   * @throws APIError when the upgrade is refused with an HTTP error.
   */
  websocket(path: string): Promise<WebSocket> {
    const origin = new URL(this.sandbox.public_host);
    const url = `${origin.protocol === 'https:' ? 'wss' : 'ws'}://${origin.host}${path}`;
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${this.#token}` }, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      // Set once the upgrade was answered with an HTTP error: that answer is the error to report.
      let refused = false;
      ws.once('open', () => {
        ws.removeAllListeners('unexpected-response');
        resolve(ws);
      });
      ws.once('unexpected-response', (req, res) => {
        refused = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // keep text
          }
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          reject(APIError.from(res.statusCode ?? 0, body, headers));
          req.destroy();
        });
      });
      ws.on('error', (err) => {
        if (!refused) reject(new ConnectionError(origin.origin, err));
      });
    });
  }
}
