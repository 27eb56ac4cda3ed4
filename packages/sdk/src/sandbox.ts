import {
  createdSandboxSchema,
  deletedResponseSchema,
  executeResponseSchema,
  listEnvelopeSchema,
  previewTokenResponseSchema,
  type SandboxObject,
  type SandboxStatus,
  sandboxObjectSchema,
  timeoutResponseSchema,
  tokenRefreshResponseSchema,
} from '@warren/protocol';
import { type Connection, type ConnectionOptions, connection, requestOptions } from './client.ts';
import { Commands } from './commands.ts';
import { Env } from './env.ts';
import { SandboxNotFoundError, WarrenError } from './errors.ts';
import { type CodeLanguage, type Execution, type Result, toExecution } from './execution.ts';
import { Files } from './files.ts';
import { type AgentLink, agentLink, secondsFromMs } from './internal/agent.ts';
import { HTTPClient, type RequestOptions } from './internal/http.ts';
import { type OutputCallbacks, type OutputEvent, RunStream } from './internal/run-stream.ts';
import { PtyApi } from './pty.ts';

/** Resources a sandbox runs with. */
export interface SandboxResources {
  vcpu: number;
  memoryMiB: number;
  diskMiB: number;
}

/** What the server knows about a sandbox. */
export interface SandboxInfo {
  sandboxId: string;
  status: SandboxStatus;
  templateId: string | undefined;
  templateName: string | undefined;
  /** Origin of the sandbox's agent API (and of its previews). */
  publicHost: string;
  /** Path-form preview base: append `{port}/`. */
  previewURL: string | undefined;
  region: string | undefined;
  resources: SandboxResources | undefined;
  internetAccess: boolean | undefined;
  /** Lifetime set at create or by `setTimeout`, in milliseconds; `undefined` means no timeout. */
  timeoutMs: number | undefined;
  /** When the sandbox is killed automatically; `undefined` means never. */
  expiresAt: Date | undefined;
  createdAt: Date | undefined;
  startedAt: Date | undefined;
  /** Labels given at create, as the server reports them. */
  metadata: Record<string, string>;
}

/** Options of {@link Sandbox.create}. */
export interface SandboxCreateOptions extends ConnectionOptions {
  /** Template name. @default 'code-interpreter' */
  template?: string | undefined;
  /** Lifetime: the sandbox is killed this long after creation (see `setTimeout`). @default no timeout */
  timeoutMs?: number | undefined;
  /** Environment variables of every process in the sandbox. */
  envs?: Record<string, string> | undefined;
  /** Whether processes may reach the internet. @default false */
  internetAccess?: boolean | undefined;
  /** Labels for your own bookkeeping, sent with the create request. */
  metadata?: Record<string, string> | undefined;
  /** Aborts the create request. */
  signal?: AbortSignal | undefined;
  /** Time the create request may take (booting included), in milliseconds. @default 120000 */
  requestTimeoutMs?: number | undefined;
}

/** Options of {@link Sandbox.list}. */
export interface SandboxListOptions extends ConnectionOptions {
  /** Only sandboxes in this state. */
  status?: 'creating' | 'running' | 'paused' | 'stopped' | 'error' | undefined;
  /** Page size asked of the server (it may cap it). @default 100 */
  pageSize?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** Options of {@link Sandbox.runCode}. */
export interface RunCodeOptions extends RequestOptions {
  /** @default 'python' */
  language?: CodeLanguage | undefined;
  /** Working directory. @default '/workspace' */
  cwd?: string | undefined;
  /** Environment variables added for this run. */
  envs?: Record<string, string> | undefined;
  /**
   * Time the code may run before it is interrupted, in milliseconds. The HTTP
   * request may take 30 s longer. @default 120000
   */
  timeoutMs?: number | undefined;
  /** Called with the execution's stdout once it finished (for live output use {@link Sandbox.runCodeStream}). */
  onStdout?: ((data: string) => void) | undefined;
  /** Called with the execution's stderr once it finished. */
  onStderr?: ((data: string) => void) | undefined;
  /** Called with each rich result (plot, table, value) once the execution finished. */
  onResult?: ((result: Result) => void) | undefined;
}

/** Options of {@link Sandbox.runCodeStream}. */
export interface RunCodeStreamOptions extends RequestOptions, OutputCallbacks {
  /** @default 'python' */
  language?: CodeLanguage | undefined;
  cwd?: string | undefined;
  envs?: Record<string, string> | undefined;
  /** Time the code may run before it is killed, in milliseconds. @default 60000 */
  codeTimeoutMs?: number | undefined;
}

/**
 * Code running with live output: iterate it for stdout/stderr chunks, `wait()`
 * for the {@link Execution}. Leaving the iteration early, `kill()`, or aborting
 * the signal kills the process.
 */
export class CodeRun implements AsyncIterable<OutputEvent> {
  readonly #run: Promise<RunStream>;

  /** @internal */
  constructor(run: Promise<RunStream>) {
    this.#run = run;
    run.catch(() => undefined);
  }

  /** Waits for the code to end. Rich results are not collected on this path (see {@link Sandbox.runCode}). */
  async wait(): Promise<Execution> {
    const o = await (await this.#run).wait();
    return {
      success: o.exitCode === 0 && !o.timedOut,
      stdout: o.stdout,
      stderr: o.stderr,
      exitCode: o.exitCode,
      text: undefined,
      results: [],
      error: o.error,
      timedOut: o.timedOut,
      durationMs: o.durationMs,
      executionCount: undefined,
      truncated: false,
    };
  }

  /** Kills the process. */
  async kill(): Promise<void> {
    (await this.#run).kill();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputEvent> {
    yield* await this.#run;
  }
}

function toInfo(o: SandboxObject): SandboxInfo {
  const date = (s: string | null | undefined) => (s ? new Date(s) : undefined);
  const meta = (o as Record<string, unknown>).metadata;
  return {
    sandboxId: o.id,
    status: o.status,
    templateId: o.template_id ?? undefined,
    templateName: o.template_name ?? undefined,
    publicHost: o.public_host,
    previewURL: o.preview_url ?? undefined,
    region: o.region ?? undefined,
    resources: o.resources
      ? { vcpu: o.resources.vcpu, memoryMiB: o.resources.memory_mb, diskMiB: o.resources.disk_mb }
      : undefined,
    internetAccess: o.internet_access ?? undefined,
    timeoutMs: o.timeout_seconds == null ? undefined : o.timeout_seconds * 1000,
    expiresAt: date(o.expires_at),
    createdAt: date(o.created_at),
    startedAt: date(o.started_at),
    metadata:
      meta !== null && typeof meta === 'object'
        ? Object.fromEntries(Object.entries(meta).filter((e): e is [string, string] => typeof e[1] === 'string'))
        : {},
  };
}

/** Refresh the agent token when less than this is left. */
const TOKEN_REFRESH_MARGIN_MS = 10 * 60_000;

/**
 * A sandbox: an isolated Linux container with its own filesystem, processes
 * and network. Create one with {@link Sandbox.create}; `await using` kills it
 * when the scope ends.
 * @example
 * await using sandbox = await Sandbox.create();
 * const execution = await sandbox.runCode('print(6 * 7)');
 * console.log(execution.stdout); // "42\n"
 */
export class Sandbox implements AsyncDisposable {
  /** The sandbox id. */
  readonly sandboxId: string;
  /** Shell commands, streamed. */
  readonly commands: Commands;
  /** Files: read, write, list, upload, download, watch. */
  readonly files: Files;
  /** Interactive terminals. */
  readonly pty: PtyApi;
  /** Global environment variables. */
  readonly env: Env;
  readonly #conn: Connection;
  readonly #agent: AgentLink;
  #info: SandboxInfo;
  #token: string;
  #tokenExpiresAt: number;
  #refreshing: Promise<void> | undefined;

  private constructor(conn: Connection, info: SandboxInfo, token: string, tokenExpiresAt: string) {
    this.#conn = conn;
    this.#info = info;
    this.sandboxId = info.sandboxId;
    this.#token = token;
    this.#tokenExpiresAt = Date.parse(tokenExpiresAt);
    const authHeaders = async () => {
      if (this.#tokenExpiresAt - Date.now() < TOKEN_REFRESH_MARGIN_MS) await this.refreshToken();
      return { authorization: `Bearer ${this.#token}` };
    };
    const http = new HTTPClient({
      baseURL: info.publicHost,
      auth: { headers: authHeaders, refresh: () => this.refreshToken() },
      fetch: conn.options.fetch,
      maxRetries: conn.options.maxRetries,
      timeoutMs: conn.options.timeoutMs,
    });
    this.#agent = agentLink(info.sandboxId, info.publicHost, http, authHeaders);
    this.commands = new Commands(this.#agent);
    this.files = new Files(this.#agent);
    this.pty = new PtyApi(this.#agent);
    this.env = new Env(this.#agent);
  }

  /**
   * Creates a sandbox and waits until it can run code.
   * @throws {TemplateNotFoundError} for an unknown template; {@link PermissionDeniedError} at the key's sandbox limit.
   * @example
   * const sandbox = await Sandbox.create({ template: 'base', timeoutMs: 10 * 60_000, envs: { MODE: 'demo' } });
   */
  static async create(options: SandboxCreateOptions = {}): Promise<Sandbox> {
    const conn = connection(options);
    const body: Record<string, unknown> = { template_name: options.template ?? 'code-interpreter' };
    const seconds = secondsFromMs(options.timeoutMs);
    if (seconds !== undefined) body.timeout_seconds = seconds;
    if (options.envs !== undefined) body.env_vars = options.envs;
    body.internet_access = options.internetAccess ?? false;
    if (options.metadata !== undefined) body.metadata = options.metadata;
    const created = await conn.control.json(
      {
        method: 'POST',
        path: '/v1/sandboxes',
        json: body,
        signal: options.signal,
        timeoutMs: options.requestTimeoutMs ?? 120_000,
      },
      createdSandboxSchema,
    );
    return new Sandbox(conn, toInfo(created), created.auth_token, created.token_expires_at);
  }

  /**
   * Connects to an existing sandbox; a paused one is resumed.
   * @throws {SandboxNotFoundError} when it does not exist.
   */
  static async connect(sandboxId: string, options: ConnectionOptions & RequestOptions = {}): Promise<Sandbox> {
    const conn = connection(options);
    const path = `/v1/sandboxes/${encodeURIComponent(sandboxId)}`;
    let info = await conn.control.json({ method: 'GET', path, ...requestOptions(options) }, sandboxObjectSchema);
    if (info.status === 'paused') {
      info = await conn.control.json(
        { method: 'POST', path: `${path}/resume`, idempotent: true, ...requestOptions(options) },
        sandboxObjectSchema,
      );
    }
    const t = await conn.control.json(
      { method: 'POST', path: `${path}/token/refresh`, idempotent: true, ...requestOptions(options) },
      tokenRefreshResponseSchema,
    );
    return new Sandbox(conn, toInfo(info), t.auth_token, t.token_expires_at);
  }

  /**
   * Every sandbox of this API key, newest first, fetched page by page as you iterate.
   * @example
   * for await (const info of Sandbox.list({ status: 'running' })) console.log(info.sandboxId);
   */
  static async *list(options: SandboxListOptions = {}): AsyncGenerator<SandboxInfo, void, undefined> {
    const conn = connection(options);
    const schema = listEnvelopeSchema(sandboxObjectSchema);
    let cursor: string | undefined;
    do {
      const page = await conn.control.json(
        {
          method: 'GET',
          path: '/v1/sandboxes',
          query: { limit: options.pageSize ?? 100, status: options.status, cursor },
          signal: options.signal,
        },
        schema,
      );
      for (const item of page.data) yield toInfo(item);
      cursor = page.has_more && page.next_cursor ? page.next_cursor : undefined;
    } while (cursor !== undefined);
  }

  /** The sandbox's agent token, for calling its agent or {@link Sandbox.getHost} URLs yourself (`Authorization: Bearer`). */
  get accessToken(): string {
    return this.#token;
  }

  /** What the server last reported (refreshed by `getInfo`, `pause`, `resume`, `setTimeout`). */
  get info(): SandboxInfo {
    return this.#info;
  }

  /** Fetches the sandbox's current state. */
  async getInfo(options: RequestOptions = {}): Promise<SandboxInfo> {
    const o = await this.#conn.control.json(
      { method: 'GET', path: this.#path(), ...requestOptions(options) },
      sandboxObjectSchema,
    );
    this.#info = toInfo(o);
    return this.#info;
  }

  /** Whether the sandbox is running (false once killed, paused or expired). */
  async isRunning(options: RequestOptions = {}): Promise<boolean> {
    try {
      return (await this.getInfo(options)).status === 'running';
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return false;
      throw err;
    }
  }

  /**
   * Runs code in the sandbox and waits for it. Python runs in a persistent
   * Jupyter kernel (state survives between calls) and returns rich results
   * (plots as `png`, tables as `html`, the last expression as `text`). A failing
   * program resolves with `success: false`; it is never retried.
   * @throws {APIUserAbortError} when `signal` aborts it.
   * @example
   * const ex = await sandbox.runCode('import math; math.pi');
   * ex.text // '3.141592653589793'
   */
  async runCode(code: string, options: RunCodeOptions = {}): Promise<Execution> {
    const timeoutMs = options.timeoutMs ?? 120_000;
    const r = await this.#agent.http.json(
      {
        method: 'POST',
        path: '/execute',
        json: {
          code,
          language: options.language ?? 'python',
          timeout: secondsFromMs(timeoutMs),
          ...(options.cwd === undefined ? {} : { workdir: options.cwd }),
          ...(options.envs === undefined ? {} : { env: options.envs }),
        },
        signal: options.signal,
        timeoutMs: timeoutMs + 30_000,
        maxRetries: 0,
        idempotent: false,
      },
      executeResponseSchema,
    );
    const execution = toExecution(r);
    if (execution.stdout) options.onStdout?.(execution.stdout);
    if (execution.stderr) options.onStderr?.(execution.stderr);
    for (const result of execution.results) options.onResult?.(result);
    return execution;
  }

  /**
   * Runs code as a plain process and streams its output as it is printed
   * (no kernel: no state between runs, no rich results).
   * @example
   * for await (const ev of sandbox.runCodeStream('for i in range(3): print(i)')) console.log(ev.type, ev.data);
   */
  runCodeStream(code: string, options: RunCodeStreamOptions = {}): CodeRun {
    const run = this.#agent
      .stream(
        '/execute/stream',
        [
          {
            type: 'execute',
            code,
            language: options.language ?? 'python',
            timeout: secondsFromMs(options.codeTimeoutMs ?? 60_000),
            ...(options.cwd === undefined ? {} : { workdir: options.cwd }),
            ...(options.envs === undefined ? {} : { env: options.envs }),
          },
        ],
        { ...requestOptions(options), endOn: ['complete'] },
      )
      .then((frames) => new RunStream(frames, { onStdout: options.onStdout, onStderr: options.onStderr }));
    return new CodeRun(run);
  }

  /**
   * URL of a port in the sandbox (path form, `…/sandboxes/{id}/ports/{port}/`).
   * Requests to it need `Authorization: Bearer` with the sandbox token, or use
   * {@link Sandbox.createPreviewURL} for a URL that carries its own token.
   */
  getHost(port: number): string {
    const base = this.#info.previewURL ?? `${this.#info.publicHost}/sandboxes/${this.sandboxId}/ports/`;
    return `${base}${port}/`;
  }

  /** A URL to a port that works without other credentials (a browser can open it) until it expires. */
  async createPreviewURL(port: number, options: RequestOptions & { ttlMs?: number } = {}): Promise<string> {
    const r = await this.#conn.control.json(
      {
        method: 'POST',
        path: `${this.#path()}/preview-token`,
        json: { port, ...(options.ttlMs === undefined ? {} : { ttl_seconds: secondsFromMs(options.ttlMs) }) },
        idempotent: true,
        ...requestOptions(options),
      },
      previewTokenResponseSchema,
    );
    return r.url;
  }

  /** Freezes every process; agent calls fail with {@link SandboxNotRunningError} until `resume()`. */
  async pause(options: RequestOptions = {}): Promise<void> {
    const o = await this.#conn.control.json(
      { method: 'POST', path: `${this.#path()}/pause`, idempotent: true, ...requestOptions(options) },
      sandboxObjectSchema,
    );
    this.#info = toInfo(o);
  }

  /** Thaws a paused sandbox. */
  async resume(options: RequestOptions = {}): Promise<void> {
    const o = await this.#conn.control.json(
      { method: 'POST', path: `${this.#path()}/resume`, idempotent: true, ...requestOptions(options) },
      sandboxObjectSchema,
    );
    this.#info = toInfo(o);
  }

  /** Sets the sandbox to be killed `lifetimeMs` from now. */
  async setTimeout(lifetimeMs: number, options: RequestOptions = {}): Promise<void> {
    if (!(lifetimeMs > 0)) throw new WarrenError('lifetimeMs must be positive');
    const r = await this.#conn.control.json(
      {
        method: 'PUT',
        path: `${this.#path()}/timeout`,
        json: { timeout_seconds: secondsFromMs(lifetimeMs) },
        ...requestOptions(options),
      },
      timeoutResponseSchema,
    );
    this.#info = {
      ...this.#info,
      timeoutMs: r.timeout_seconds == null ? undefined : r.timeout_seconds * 1000,
      expiresAt: r.expires_at ? new Date(r.expires_at) : undefined,
    };
  }

  /**
   * Kills the sandbox and deletes its files.
   * @returns true when it was killed, false when it no longer existed.
   */
  async kill(options: RequestOptions = {}): Promise<boolean> {
    try {
      await this.#conn.control.json(
        { method: 'DELETE', path: this.#path(), ...requestOptions(options) },
        deletedResponseSchema,
      );
      return true;
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return false;
      throw err;
    }
  }

  /** Gets a new agent token (done automatically before the old one expires and after a 401). */
  async refreshToken(options: RequestOptions = {}): Promise<void> {
    this.#refreshing ??= this.#conn.control
      .json(
        { method: 'POST', path: `${this.#path()}/token/refresh`, idempotent: true, ...requestOptions(options) },
        tokenRefreshResponseSchema,
      )
      .then((t) => {
        this.#token = t.auth_token;
        this.#tokenExpiresAt = Date.parse(t.token_expires_at);
      })
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }

  /** Kills the sandbox when an `await using` scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  #path(): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}`;
  }
}
