import { WarrenError } from './errors.ts';
import { type Fetch, HTTPClient, type RequestOptions } from './internal/http.ts';

/** Where the server is and how to reach it. Every static entry point accepts these. */
export interface ConnectionOptions {
  /** API key of the control plane. @default process.env.WARREN_API_KEY */
  apiKey?: string | undefined;
  /** Server URL. @default process.env.WARREN_URL, else http://127.0.0.1:8080 */
  baseURL?: string | undefined;
  /** The `fetch` used for every HTTP request (inject one for tests or proxies). @default globalThis.fetch */
  fetch?: Fetch | undefined;
  /** Retries of idempotent requests after 429, 5xx and connection errors. @default 2 */
  maxRetries?: number | undefined;
  /** Default time one request may take until its answer's headers arrive, in milliseconds. @default 60000 */
  timeoutMs?: number | undefined;
}

/** The resolved connection: the control-plane client plus what agent clients need. */
export interface Connection {
  control: HTTPClient;
  options: ConnectionOptions & { apiKey: string; baseURL: string };
}

/**
 * Resolves connection options against the environment.
 * @throws {WarrenError} when no API key is given or set.
 */
export function connection(options: ConnectionOptions = {}): Connection {
  const apiKey = options.apiKey ?? process.env.WARREN_API_KEY;
  if (!apiKey) throw new WarrenError('Missing API key: pass { apiKey } or set WARREN_API_KEY');
  const baseURL = options.baseURL ?? process.env.WARREN_URL ?? 'http://127.0.0.1:8080';
  const control = new HTTPClient({
    baseURL,
    auth: { headers: () => ({ 'x-api-key': apiKey }) },
    fetch: options.fetch,
    maxRetries: options.maxRetries,
    timeoutMs: options.timeoutMs,
  });
  return { control, options: { ...options, apiKey, baseURL } };
}

/** Picks the per-call request options out of a bigger options object. */
export function requestOptions(o: RequestOptions | undefined): RequestOptions {
  return { signal: o?.signal, timeoutMs: o?.timeoutMs, maxRetries: o?.maxRetries };
}
