import type { z } from 'zod';
import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  InvalidResponseError,
} from '../errors.ts';
import { streamingFetch } from './node-fetch.ts';

/** A request body `fetch` accepts. */
export type RequestBody = NonNullable<RequestInit['body']>;

/** Options every call accepts. */
export interface RequestOptions {
  /** Aborts the call; it then rejects with `APIUserAbortError`. */
  signal?: AbortSignal | undefined;
  /** Time one attempt may take until the answer's headers arrive, in milliseconds. */
  timeoutMs?: number | undefined;
  /** Retries after 429, 5xx and connection errors (idempotent requests only). */
  maxRetries?: number | undefined;
}

/** The `fetch` the SDK calls; inject one for tests or proxies. */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** How a request authenticates: headers to send, and an optional refresh after a 401. */
export interface Auth {
  headers(): Promise<Record<string, string>> | Record<string, string>;
  /** Gets new credentials after a 401; the request is then sent once more. */
  refresh?(): Promise<void>;
}

/** One HTTP request. */
export interface HTTPRequest extends RequestOptions {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path below the base URL, or an absolute URL. */
  path: string;
  query?: Record<string, string | number | boolean | undefined> | undefined;
  /** A JSON body. */
  json?: unknown;
  /** A raw body (a stream is sent as it is read and is never retried). */
  body?: RequestBody | undefined;
  headers?: Record<string, string> | undefined;
  /**
   * The answer is read as a stream (a download): the request goes over
   * `node:http` like a streamed body does (see `streamingFetch`), unless a fetch was injected.
   */
  streamAnswer?: boolean | undefined;
  /**
   * Whether sending the request twice is harmless. Only idempotent requests are
   * retried. @default true for GET, PUT and DELETE; false for POST and PATCH
   */
  idempotent?: boolean | undefined;
}

/** Settings of an {@link HTTPClient}. */
export interface HTTPClientOptions {
  baseURL: string;
  auth: Auth;
  fetch?: Fetch | undefined;
  /** @default 2 */
  maxRetries?: number | undefined;
  /** @default 60000 */
  timeoutMs?: number | undefined;
  /** Waits between retries; tests replace it to record the delays. */
  sleep?: ((ms: number, signal: AbortSignal | undefined) => Promise<void>) | undefined;
}

/** Longest `Retry-After` honoured; longer waits fall back to the computed backoff. */
const MAX_RETRY_AFTER_MS = 60_000;
const INITIAL_RETRY_MS = 500;
const MAX_RETRY_MS = 8_000;

/** Delay before retry number `retry` (0-based): exponential with up to 25 % jitter below it. */
export function backoffMs(retry: number, random: () => number = Math.random): number {
  const base = Math.min(INITIAL_RETRY_MS * 2 ** retry, MAX_RETRY_MS);
  return Math.round(base * (1 - 0.25 * random()));
}

/** The wait a 429/503 answer asks for (`retry-after-ms`, `retry-after` seconds or HTTP date), if usable. */
export function retryAfterMs(headers: Headers, now: number = Date.now()): number | undefined {
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  let wait = Number.isFinite(ms) ? ms : undefined;
  const raw = headers.get('retry-after');
  if (wait === undefined && raw !== null) {
    const seconds = Number.parseFloat(raw);
    if (Number.isFinite(seconds)) wait = seconds * 1000;
    else {
      const at = Date.parse(raw);
      if (Number.isFinite(at)) wait = at - now;
    }
  }
  return wait !== undefined && wait >= 0 && wait <= MAX_RETRY_AFTER_MS ? wait : undefined;
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function isStreamBody(body: RequestBody | undefined): boolean {
  return body !== undefined && typeof body === 'object' && ('getReader' in body || Symbol.asyncIterator in body);
}

/** Parses an answer body: JSON when it is JSON, else its text. */
async function readBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * The SDK's HTTP core: per-attempt timeouts, retries with backoff and jitter
 * (honouring `Retry-After`) for idempotent requests, one credential refresh
 * after a 401, and error answers turned into {@link APIError} subclasses.
 */
export class HTTPClient {
  readonly baseURL: string;
  readonly #auth: Auth;
  readonly #fetch: Fetch;
  readonly #streamFetch: Fetch;
  readonly #maxRetries: number;
  readonly #timeoutMs: number;
  readonly #sleep: (ms: number, signal: AbortSignal | undefined) => Promise<void>;

  constructor(options: HTTPClientOptions) {
    this.baseURL = options.baseURL.replace(/\/+$/, '');
    this.#auth = options.auth;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    // Streamed bodies and answers go over node:http unless a fetch was injected (see streamingFetch).
    this.#streamFetch = options.fetch ?? streamingFetch;
    this.#maxRetries = options.maxRetries ?? 2;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#sleep = options.sleep ?? abortableSleep;
  }

  /** Default per-attempt timeout of this client, in milliseconds. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Sends a request and validates its JSON answer with `schema`. */
  async json<S extends z.ZodType>(req: HTTPRequest, schema: S): Promise<z.output<S>> {
    const res = await this.send(req);
    let body: unknown;
    try {
      body = await readBody(res);
    } catch (err) {
      if (req.signal?.aborted) throw new APIUserAbortError(undefined, { cause: err });
      throw new APIConnectionError(`Connection error while reading the answer: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new InvalidResponseError(
        `Unexpected answer to ${req.method} ${req.path}: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'invalid'}`,
      );
    }
    return parsed.data;
  }

  /** The URL a path resolves to, with its query. */
  url(path: string, query?: HTTPRequest['query']): URL {
    const url = new URL(/^https?:\/\//.test(path) ? path : `${this.baseURL}${path}`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  /**
   * Sends a request and returns the successful answer unread (its body may be
   * streamed; the timeout covers the time until its headers arrive).
   * @throws {APIError} for an error status, {@link APIConnectionError}, {@link APITimeoutError}, {@link APIUserAbortError}.
   */
  async send(req: HTTPRequest): Promise<Response> {
    const maxRetries = isStreamBody(req.body) ? 0 : (req.maxRetries ?? this.#maxRetries);
    const idempotent = req.idempotent ?? (req.method === 'GET' || req.method === 'PUT' || req.method === 'DELETE');
    const timeoutMs = req.timeoutMs ?? this.#timeoutMs;
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const canRetry = idempotent && attempt < maxRetries;
      let outcome: { res: Response } | { error: Error; retryAfter?: number | undefined };
      try {
        outcome = { res: await this.#attempt(req, timeoutMs) };
      } catch (err) {
        if (err instanceof APIUserAbortError || !(err instanceof APIConnectionError) || !canRetry) throw err;
        outcome = { error: err };
      }
      if ('res' in outcome) {
        const { res } = outcome;
        if (res.ok) return res;
        const error = APIError.from(res.status, await readBody(res).catch(() => undefined), res.headers);
        if (error instanceof AuthenticationError && !refreshed && this.#auth.refresh) {
          // A 401 means the request was not carried out, so it may be sent again once.
          refreshed = true;
          await this.#auth.refresh();
          attempt--;
          continue;
        }
        const retryable = res.status === 429 || res.status >= 500;
        if (!retryable || !canRetry) throw error;
        outcome = { error, retryAfter: retryAfterMs(res.headers) };
      }
      await this.#sleep(outcome.retryAfter ?? backoffMs(attempt), req.signal);
    }
  }

  async #attempt(req: HTTPRequest, timeoutMs: number): Promise<Response> {
    if (req.signal?.aborted) throw new APIUserAbortError();
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onUserAbort = () => controller.abort();
    req.signal?.addEventListener('abort', onUserAbort, { once: true });
    const headers: Record<string, string> = { accept: 'application/json', ...(await this.#auth.headers()) };
    let body: RequestBody | undefined = req.body;
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    }
    Object.assign(headers, req.headers);
    const init: RequestInit & { duplex?: 'half' } = { method: req.method, headers, signal: controller.signal };
    if (body !== undefined) init.body = body;
    if (isStreamBody(body)) init.duplex = 'half';
    try {
      const send = isStreamBody(body) || req.streamAnswer ? this.#streamFetch : this.#fetch;
      const res = await send(this.url(req.path, req.query), init);
      return res;
    } catch (err) {
      req.signal?.removeEventListener('abort', onUserAbort);
      if (req.signal?.aborted) throw new APIUserAbortError(undefined, { cause: err });
      if (timedOut) throw new APITimeoutError(`Request timed out after ${timeoutMs} ms`, { cause: err });
      throw new APIConnectionError(`Connection error: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}
