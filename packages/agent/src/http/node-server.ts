/**
 * The agent's HTTP front on Node's own server: each Node request becomes a
 * call of the Hono app's `fetch`, and its answer is written to Node's
 * response. This replaces `@hono/node-server` in the agent.
 *
 * Why our own: a cold create waits for the agent's start, and
 * `@hono/node-server` makes that start load two things the agent's requests
 * do not use. When it loads, it subclasses Node's web `Request` and `Response`,
 * which loads Node's undici: 27 ms on top of a 32 ms bare `node` start on this
 * host (`node -e "require('http'); globalThis.Response"`, medians of 15). It
 * also requires `http2` for type checks, another 11 ms.
 *
 * Here neither is loaded until something needs it:
 * - Hono gets a light request with `method` and `url`. Its `headers` (a web
 *   `Headers`) and `signal` (watching Node's response) are built on first use;
 *   its body and body readers build a real web `Request` on first use. The
 *   routes read Node's request instead (see app-env.ts).
 * - `globalThis.Response`, which Hono constructs for every answer, is replaced
 *   for the process by {@link LightResponse}. It keeps what it was given and
 *   builds a real web `Response` only when asked for more than its status and
 *   headers. `@hono/node-server` replaced it the same way.
 * - An answer whose body is a string, bytes or nothing is written straight to
 *   Node's response. Any other body (a stream, a `Blob`…) goes through a real
 *   `Response` and `Readable.fromWeb`.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';

/** What the app's `fetch` gets as its environment (read by `nodeRequest`/`nodeResponse` in app-env.ts). */
export interface NodeBindings {
  incoming: IncomingMessage;
  outgoing: ServerResponse;
}

/** The app's `fetch`, e.g. `app.fetch` of a Hono app. */
export type FetchHandler = (request: Request, env: NodeBindings) => Response | Promise<Response>;

/** A route that wrote Node's response itself answers with this header set; nothing more is written. */
export const ALREADY_SENT_HEADER = 'x-warren-already-sent';

/** The answer of a route that wrote Node's response itself (see {@link ALREADY_SENT_HEADER}). */
export function alreadySent(): Response {
  return new Response(null, { headers: { [ALREADY_SENT_HEADER]: '1' } });
}

/** Origin of the URLs Hono sees, as in-process `app.request()` gives them. */
const ORIGIN = 'http://localhost';
/** Statuses whose answer has no body (the web `Response` refuses one). */
const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** Node's own `Response`, loaded (with undici) the first time one is needed; see {@link installLightResponse}. */
let nativeResponseClass: typeof Response | undefined;
/** How to load it: the lazy global that {@link installLightResponse} replaced. */
let loadNativeResponse: (() => typeof Response) | undefined;

function nativeResponse(): typeof Response {
  if (nativeResponseClass === undefined) {
    if (loadNativeResponse === undefined) throw new Error('LightResponse is not installed');
    nativeResponseClass = loadNativeResponse();
  }
  return nativeResponseClass;
}

/** What a web `Response` takes as its body. */
type BodyInit = ConstructorParameters<typeof Response>[0];
/** Headers as a web `Response` takes them. */
type HeadersSource = ConstructorParameters<typeof Headers>[0];

/**
 * A header list as lower-case names and values, whatever form it was given
 * in. Tells a `Headers` by its tag: naming the `Headers` global would load undici.
 */
function headerEntries(source: HeadersSource | Headers): Array<[string, string]> {
  if (source === undefined) return [];
  if (Array.isArray(source)) return source.map(([name, value]) => [String(name).toLowerCase(), String(value)]);
  if (Object.prototype.toString.call(source) === '[object Headers]') return [...(source as Headers)];
  return Object.entries(source as Record<string, string>).map(([name, value]) => [name.toLowerCase(), String(value)]);
}

/**
 * What a light stand-in for a web `Request` or `Response` reads from the real
 * one it builds on first use ({@link native}): the body and its readers.
 */
abstract class WebBodyStandIn<T extends Request | Response> {
  /** The real web object this one stands for. */
  abstract native(): T;

  get body(): ReadableStream<Uint8Array> | null {
    return this.native().body;
  }

  get bodyUsed(): boolean {
    return this.native().bodyUsed;
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return this.native().arrayBuffer();
  }

  blob(): Promise<Blob> {
    return this.native().blob();
  }

  formData(): Promise<FormData> {
    return this.native().formData();
  }

  json(): Promise<unknown> {
    return this.native().json();
  }

  text(): Promise<string> {
    return this.native().text();
  }

  clone(): T {
    return this.native().clone() as T;
  }
}

/**
 * `Response` for a process whose answers go to Node's server: keeps the body
 * and init it was given, answers `status`, `ok`, `statusText` and `headers`
 * itself (`headers` as a web `Headers`, built on first use), and builds a
 * real web `Response` for anything else (the body as a stream, `text()`,
 * `clone()`…), after which it behaves as that one. Installed as
 * `globalThis.Response` by {@link installLightResponse}.
 */
export class LightResponse extends WebBodyStandIn<Response> {
  readonly #body: BodyInit;
  readonly #status: number;
  readonly #statusText: string;
  #headersInit: HeadersSource;
  #headers: Headers | undefined;
  #native: Response | undefined;

  constructor(body?: BodyInit | null, init?: ResponseInit) {
    super();
    const status = init?.status ?? 200;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`init["status"] must be in the range of 200 to 599, inclusive (got ${status})`);
    }
    const given = body ?? null;
    if (given !== null && NULL_BODY_STATUSES.has(status)) {
      throw new TypeError(`Response constructor: invalid response status code ${status}`);
    }
    this.#body = given;
    this.#status = status;
    this.#statusText = init?.statusText ?? '';
    // Another Response as the init (Hono's HEAD answer): its headers, as they are now.
    this.#headersInit =
      typeof init === 'object' && init !== null && #body in init ? init.#currentHeaders() : init?.headers;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Node's own responses (from `fetch`, say) count too; the check loads nothing.
    return (
      typeof value === 'object' &&
      value !== null &&
      (#body in value || Object.prototype.toString.call(value) === '[object Response]')
    );
  }

  static json(data: unknown, init?: ResponseInit): Response {
    return nativeResponse().json(data, init);
  }

  static error(): Response {
    return nativeResponse().error();
  }

  static redirect(url: string | URL, status?: Parameters<typeof Response.redirect>[1]): Response {
    return nativeResponse().redirect(url, status ?? 302);
  }

  get [Symbol.toStringTag](): string {
    return 'Response';
  }

  get status(): number {
    return this.#status;
  }

  get ok(): boolean {
    return this.#status >= 200 && this.#status < 300;
  }

  get statusText(): string {
    return this.#statusText;
  }

  get headers(): Headers {
    if (this.#native !== undefined) return this.#native.headers;
    if (this.#headers === undefined) {
      this.#headers = new Headers(this.#headersInit);
      if (typeof this.#body === 'string' && !this.#headers.has('content-type')) {
        this.#headers.set('content-type', 'text/plain;charset=UTF-8');
      }
    }
    return this.#headers;
  }

  /** The real web `Response` this one stands for; every other member reads it. */
  override native(): Response {
    const headers = this.#currentHeaders();
    this.#native ??= new (nativeResponse())(this.#body, {
      status: this.#status,
      statusText: this.#statusText,
      ...(headers === undefined ? {} : { headers }),
    });
    return this.#native;
  }

  /**
   * What Node's response needs, when the body is a string, bytes or nothing
   * and no real `Response` was made: status, headers (lower-case names) and body.
   */
  plain(): { status: number; headers: Array<[string, string]>; body: string | Uint8Array | null } | undefined {
    if (this.#native !== undefined) return undefined;
    const body = this.#body;
    let bytes: string | Uint8Array | null;
    if (body === null || typeof body === 'string' || body instanceof Uint8Array) bytes = body;
    else if (body instanceof ArrayBuffer) bytes = new Uint8Array(body);
    else if (ArrayBuffer.isView(body)) bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    else return undefined;
    const headers = headerEntries(this.#currentHeaders());
    if (typeof bytes === 'string' && !headers.some(([name]) => name === 'content-type')) {
      headers.push(['content-type', 'text/plain;charset=UTF-8']);
    }
    return { status: this.#status, headers, body: bytes };
  }

  #currentHeaders(): HeadersSource {
    return this.#headers ?? this.#headersInit;
  }

  get type(): Response['type'] {
    return this.native().type;
  }

  get url(): string {
    return this.native().url;
  }

  get redirected(): boolean {
    return this.native().redirected;
  }
}

/**
 * Makes `globalThis.Response` the {@link LightResponse} for this process,
 * keeping Node's own one loadable (and loaded only when needed). Idempotent.
 */
export function installLightResponse(): void {
  if (loadNativeResponse !== undefined) return;
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, 'Response');
  const install = () =>
    Object.defineProperty(globalThis, 'Response', {
      value: LightResponse,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  loadNativeResponse = () => {
    // Node's lazy global defines the loaded class over itself: put ours back afterwards.
    const loaded = (descriptor?.get ? descriptor.get.call(globalThis) : descriptor?.value) as typeof Response;
    install();
    return loaded;
  };
  install();
}

/**
 * The web `Request` Hono sees: `method` and `url` at once; `headers` and
 * `signal` built on first use, the rest from a real `Request` built on first use.
 */
class LightRequest extends WebBodyStandIn<Request> {
  readonly method: string;
  readonly url: string;
  readonly #incoming: IncomingMessage;
  readonly #outgoing: ServerResponse;
  #headers: Headers | undefined;
  #signal: AbortSignal | undefined;
  #native: Request | undefined;

  constructor(incoming: IncomingMessage, outgoing: ServerResponse, url: string) {
    super();
    this.method = incoming.method ?? 'GET';
    this.url = url;
    this.#incoming = incoming;
    this.#outgoing = outgoing;
  }

  get [Symbol.toStringTag](): string {
    return 'Request';
  }

  get headers(): Headers {
    if (this.#headers === undefined) {
      const raw = this.#incoming.rawHeaders;
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
      this.#headers = new Headers(pairs);
    }
    return this.#headers;
  }

  /**
   * Aborts when the client goes away before its answer is sent (Node's
   * response closes unfinished). Watches the response itself, so a route that
   * only wants to know this (`POST /execute`) builds no real `Request`.
   */
  get signal(): AbortSignal {
    if (this.#signal === undefined) {
      const controller = new AbortController();
      const outgoing = this.#outgoing;
      const check = () => {
        if (!outgoing.writableFinished) controller.abort();
      };
      if (outgoing.destroyed) check();
      else outgoing.once('close', check);
      this.#signal = controller.signal;
    }
    return this.#signal;
  }

  /** The real `Request` (body from Node's request, the same {@link signal}). */
  override native(): Request {
    if (this.#native === undefined) {
      const withBody = this.method !== 'GET' && this.method !== 'HEAD';
      this.#native = new Request(this.url, {
        method: this.method,
        headers: this.headers,
        signal: this.signal,
        ...(withBody ? { body: Readable.toWeb(this.#incoming) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
      } as RequestInit);
    }
    return this.#native;
  }
}

/** A bare answer written before (or instead of) the app: a client error or a failure of the app. */
function answerBare(outgoing: ServerResponse, status: number, message: string): void {
  if (outgoing.headersSent) {
    outgoing.destroy();
    return;
  }
  const body = `${message}\n`;
  outgoing.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  outgoing.end(body);
}

/** Writes headers given as lower-case pairs on Node's response (which may already hold some, e.g. X-Request-ID). */
function setHeaders(outgoing: ServerResponse, headers: Iterable<[string, string]>): boolean {
  let alreadySentByRoute = false;
  const merged = new Map<string, string | string[]>();
  for (const [name, value] of headers) {
    if (name === ALREADY_SENT_HEADER) {
      alreadySentByRoute = true;
      continue;
    }
    const prior = merged.get(name);
    if (prior === undefined) merged.set(name, value);
    else if (name === 'set-cookie') merged.set(name, Array.isArray(prior) ? [...prior, value] : [prior, value]);
    else merged.set(name, `${prior as string}, ${value}`);
  }
  if (alreadySentByRoute) return true;
  for (const [name, value] of merged) outgoing.setHeader(name, value);
  return false;
}

async function writeResponse(response: Response, outgoing: ServerResponse): Promise<void> {
  const plain = response instanceof LightResponse ? response.plain() : undefined;
  if (plain !== undefined) {
    if (setHeaders(outgoing, plain.headers)) return;
    const { body } = plain;
    outgoing.statusCode = plain.status;
    if (body === null) {
      outgoing.end();
      return;
    }
    if (!outgoing.hasHeader('content-length')) {
      outgoing.setHeader('content-length', typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
    }
    outgoing.end(body);
    return;
  }
  const native = response instanceof LightResponse ? response.native() : response;
  const entries: Array<[string, string]> = [];
  native.headers.forEach((value, name) => {
    if (name !== 'set-cookie') entries.push([name, value]);
  });
  for (const cookie of native.headers.getSetCookie()) entries.push(['set-cookie', cookie]);
  if (setHeaders(outgoing, entries)) return;
  outgoing.statusCode = native.status;
  if (native.body === null) {
    outgoing.end();
    return;
  }
  const source = Readable.fromWeb(native.body as import('node:stream/web').ReadableStream);
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    outgoing.once('close', () => {
      source.destroy();
      done();
    });
    source.once('error', () => {
      outgoing.destroy();
      done();
    });
    source.pipe(outgoing).once('finish', done);
  });
}

/**
 * A Node request listener serving `fetch`; installs {@link LightResponse}.
 * Requests whose target is not an origin-form path get a bare 400, as does a
 * backslash in the path (Hono's path and a URL parser would disagree on it).
 * @param onError receives failures of `fetch` itself (the app's own errors are its `onError`'s), answered 500.
 * @example
 * const server = createServer(requestListener(app.fetch, (err) => console.error(err)));
 */
export function requestListener(fetch: FetchHandler, onError: (err: unknown) => void): RequestListener {
  installLightResponse();
  return (incoming, outgoing) => {
    const target = incoming.url ?? '';
    const query = target.indexOf('?');
    const backslash = target.indexOf('\\');
    if (target[0] !== '/' || (backslash !== -1 && (query === -1 || backslash < query))) {
      answerBare(outgoing, 400, 'Bad request target');
      return;
    }
    const fail = (err: unknown) => {
      onError(err);
      answerBare(outgoing, 500, 'Internal error');
    };
    const request = new LightRequest(incoming, outgoing, `${ORIGIN}${target}`);
    let answer: Response | Promise<Response>;
    try {
      answer = fetch(request as unknown as Request, { incoming, outgoing });
    } catch (err) {
      fail(err);
      return;
    }
    const write = (response: Response) => writeResponse(response, outgoing).catch(fail);
    if (answer instanceof Promise) answer.then(write, fail);
    else void write(answer);
  };
}
