import { createHmac, randomBytes } from 'node:crypto';
import { ErrorCode, envMapSchema, resolveExecuteLanguage, rfc3339, ServiceError } from '@warren/protocol';
import { z } from 'zod';
import { agentRequest } from '../internal/agent-client.ts';
import { agentSocketOf } from '../internal/sandbox-socket.ts';
import type { Driver } from '../runtime/driver.ts';
import type { Store } from '../store/store.ts';
import type { Logger } from './sandboxes.ts';
import type { TokenService } from './tokens.ts';

/** Default `timeout` of `POST /execute/async`, seconds (the SDKs send 1800 too). */
export const ASYNC_DEFAULT_TIMEOUT_SECONDS = 1800;
/** Longest `timeout` accepted, seconds. */
export const ASYNC_MAX_TIMEOUT_SECONDS = 86_400;
/** Time the agent call may take beyond the code's own timeout. */
const AGENT_SLACK_MS = 30_000;
/** Largest `/execute` answer read from an agent. */

/** Callback headers the server sets itself; a request may not set them. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'x-hopx-signature',
  'x-hopx-timestamp',
]);

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/, 'invalid header name')
  .refine((n) => !RESERVED_HEADERS.has(n.toLowerCase()), 'this header is set by the server');
const headerValue = z
  .string()
  .max(4096)
  .refine((v) => !/[\r\n\0]/.test(v), 'header values must not contain CR, LF or NUL');
const optionalPath = z
  .string()
  .max(4096)
  .refine((v) => !v.includes('\0'), 'must not contain NUL')
  .nullish();

/** `POST /execute/async` body (PROTOCOL §8.2). Accepts `workdir` and the docs' `working_dir`. */
export const asyncExecuteRequestSchema = z.object({
  code: z.string(),
  language: z
    .string()
    .refine((l) => resolveExecuteLanguage(l) !== undefined, 'unsupported language')
    .nullish(),
  timeout: z.number().nonnegative().max(ASYNC_MAX_TIMEOUT_SECONDS).nullish(),
  workdir: optionalPath,
  working_dir: optionalPath,
  env: envMapSchema.nullish(),
  callback_url: z
    .url({ protocol: /^https?$/, error: 'callback_url must be an http(s) URL' })
    .max(4096, 'callback_url is too long'),
  callback_headers: z
    .record(headerName, headerValue)
    .refine((h) => Object.keys(h).length <= 50, 'at most 50 callback headers')
    .nullish(),
  callback_signature_secret: z.string().min(1).max(1024).nullish(),
});

export type AsyncExecuteRequest = z.infer<typeof asyncExecuteRequestSchema>;

/** What `POST /execute/async` answers at once. */
export interface AsyncAccepted {
  execution_id: string;
  status: 'queued';
  callback_url: string;
  message: string;
  timestamp: string;
}

/** The JSON body POSTed to `callback_url`. */
export interface CallbackBody {
  execution_id: string;
  sandbox_id: string;
  status: 'completed' | 'failed' | 'timeout';
  success: boolean;
  stdout: string;
  stderr: string;
  exit_code: number;
  execution_time: number;
  timestamp: string;
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
  error?: string;
}

/**
 * The webhook signature: `sha256=` + hex HMAC-SHA256 with the request's
 * `callback_signature_secret` as key over the exact bytes
 * `"<X-HOPX-Timestamp>.<raw request body>"` (the timestamp is unix seconds,
 * in decimal, as sent in the header). A receiver recomputes it over the raw
 * body it got, compares in constant time, and rejects timestamps more than a
 * few minutes old, so a captured delivery cannot be replayed later.
 * @example signWebhook('s3cret', 1700000000, '{"execution_id":"exec_1"}') // 'sha256=…'
 */
export function signWebhook(secret: string, timestampSeconds: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex')}`;
}

/**
 * Parses `WARREN_WEBHOOK_ALLOW`: comma-separated host names (`hooks.example.com`),
 * suffix wildcards (`*.example.com`) or IP literals. Unset or `*` allows every host.
 */
export function parseAllowList(value: string | undefined): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const entries = value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  return entries.length === 0 || entries.includes('*') ? undefined : entries;
}

/** Whether a callback URL's host is on the allow-list (everything is when there is none). */
export function hostAllowed(allow: readonly string[] | undefined, url: string): boolean {
  if (allow === undefined) return true;
  const host = new URL(url).hostname.toLowerCase().replace(/^\[|\]$/g, '');
  return allow.some((entry) =>
    entry.startsWith('*.') ? host.endsWith(entry.slice(1)) && host.length > entry.length - 1 : host === entry,
  );
}

function truncateUtf8(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return { text, truncated: false };
  // Drop a partial character at the cut.
  return {
    text: buf
      .subarray(0, maxBytes)
      .toString('utf8')
      .replace(/\uFFFD$/, ''),
    truncated: true,
  };
}

const delay = (ms: number) => new Promise<void>((ok) => setTimeout(ok, ms));

export interface AsyncExecutionOptions {
  /** Async executions one sandbox may have in flight (running or delivering). */
  maxPerSandbox: number;
  /** Async executions the whole server may have in flight. */
  maxTotal: number;
  /** Callback hosts allowed; undefined allows all. */
  allow: readonly string[] | undefined;
  /** Largest stdout and stderr, each, in a callback body. */
  maxOutputBytes: number;
  /** Time one delivery attempt may take. */
  attemptTimeoutMs: number;
  /** Waits before each retry; their count is the number of retries. */
  retryDelaysMs: readonly number[];
}

/** Defaults of {@link AsyncExecutionOptions} other than the configured ones. */
export const ASYNC_DEFAULTS = {
  maxTotal: 1024,
  maxOutputBytes: 1024 * 1024,
  attemptTimeoutMs: 10_000,
  retryDelaysMs: [1000, 2000, 4000],
} as const;

interface Job {
  id: string;
  sandboxId: string;
  code: string;
  language: string;
  timeoutSeconds: number;
  workdir: string | undefined;
  env: Record<string, string> | undefined;
  callbackURL: string;
  callbackHeaders: Record<string, string>;
  secret: string | undefined;
}

/**
 * `POST /execute/async`: runs code through the sandbox agent's synchronous
 * `/execute` and POSTs the result to the caller's `callback_url`. Runs on the
 * server (sandboxes cannot reach the host), in memory: executions in flight
 * when the server stops are lost.
 */
export class AsyncExecutionService {
  readonly #deps: { store: Store; driver: Driver; tokens: TokenService; log: Logger };
  readonly #options: AsyncExecutionOptions;
  readonly #inFlight = new Map<string, number>();
  #total = 0;

  constructor(
    deps: { store: Store; driver: Driver; tokens: TokenService; log: Logger },
    options: AsyncExecutionOptions,
  ) {
    this.#deps = deps;
    this.#options = options;
  }

  /** Executions in flight for a sandbox, or in total. */
  inFlight(sandboxId?: string): number {
    return sandboxId === undefined ? this.#total : (this.#inFlight.get(sandboxId) ?? 0);
  }

  /**
   * Queues one execution and returns the immediate answer.
   * @throws ServiceError FORBIDDEN (callback host not allowed), RATE_LIMIT_EXCEEDED (too many in flight).
   */
  submit(sandboxId: string, body: AsyncExecuteRequest): AsyncAccepted {
    if (!hostAllowed(this.#options.allow, body.callback_url)) {
      throw new ServiceError(
        ErrorCode.FORBIDDEN,
        `callback_url host ${new URL(body.callback_url).hostname} is not allowed (WARREN_WEBHOOK_ALLOW)`,
      );
    }
    const current = this.inFlight(sandboxId);
    if (current >= this.#options.maxPerSandbox || this.#total >= this.#options.maxTotal) {
      throw new ServiceError(
        ErrorCode.RATE_LIMIT_EXCEEDED,
        `Too many async executions in flight (${current} for this sandbox, at most ${this.#options.maxPerSandbox})`,
      );
    }
    const job: Job = {
      id: `exec_${randomBytes(8).toString('hex')}`,
      sandboxId,
      code: body.code,
      language: resolveExecuteLanguage(body.language ?? 'python') ?? 'python',
      timeoutSeconds: Math.ceil(body.timeout || ASYNC_DEFAULT_TIMEOUT_SECONDS),
      workdir: body.workdir ?? body.working_dir ?? undefined,
      env: body.env ?? undefined,
      callbackURL: body.callback_url,
      callbackHeaders: body.callback_headers ?? {},
      secret: body.callback_signature_secret ?? undefined,
    };
    this.#inFlight.set(sandboxId, current + 1);
    this.#total += 1;
    void this.#run(job)
      .catch((err: unknown) => this.#deps.log.error(`async ${job.id}: ${(err as Error).message}`))
      .finally(() => {
        const n = (this.#inFlight.get(sandboxId) ?? 1) - 1;
        if (n <= 0) this.#inFlight.delete(sandboxId);
        else this.#inFlight.set(sandboxId, n);
        this.#total -= 1;
      });
    return {
      execution_id: job.id,
      status: 'queued',
      callback_url: job.callbackURL,
      message: 'Execution queued. Will POST to callback_url when complete.',
      timestamp: rfc3339(),
    };
  }

  async #run(job: Job): Promise<void> {
    const result = await this.#execute(job);
    await this.#deliver(job, result);
  }

  /** Runs the code through the agent; every outcome becomes a callback body, never a throw. */
  async #execute(job: Job): Promise<CallbackBody> {
    const started = Date.now();
    const base = { execution_id: job.id, sandbox_id: job.sandboxId };
    const failed = (status: 'failed' | 'timeout', error: string, exitCode: number): CallbackBody => ({
      ...base,
      status,
      success: false,
      stdout: '',
      stderr: '',
      exit_code: exitCode,
      execution_time: (Date.now() - started) / 1000,
      timestamp: rfc3339(),
      error,
    });
    const target = agentSocketOf(this.#deps, job.sandboxId);
    if (!target.ok) return failed('failed', target.error.message, -1);
    const timeoutMs = job.timeoutSeconds * 1000 + AGENT_SLACK_MS;
    const { token } = this.#deps.tokens.issue(job.sandboxId, Math.ceil(timeoutMs / 1000) + 300);
    let reply: { status: number; body: unknown };
    try {
      reply = await agentRequest(
        target.socketPath,
        token,
        'POST',
        '/execute',
        {
          code: job.code,
          language: job.language,
          timeout: job.timeoutSeconds,
          ...(job.workdir === undefined ? {} : { workdir: job.workdir }),
          ...(job.env === undefined ? {} : { env: job.env }),
        },
        timeoutMs,
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ETIMEDOUT')
        return failed('timeout', `Execution timed out after ${job.timeoutSeconds}s`, 124);
      return failed('failed', `Sandbox agent is not reachable: ${(err as Error).message}`, -1);
    }
    const r = (typeof reply.body === 'object' && reply.body !== null ? reply.body : {}) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? v : '');
    if (reply.status !== 200) {
      const message = str(r.message) || str(r.error) || `agent answered ${reply.status}`;
      return failed('failed', message, -1);
    }
    const stdout = truncateUtf8(str(r.stdout), this.#options.maxOutputBytes);
    const stderr = truncateUtf8(str(r.stderr), this.#options.maxOutputBytes);
    const exitCode = typeof r.exit_code === 'number' ? r.exit_code : -1;
    const error = str(r.error);
    const timedOut = r.timed_out === true || (exitCode === 124 && /timed out/i.test(error));
    const success = r.success === true && !timedOut;
    return {
      ...base,
      status: timedOut ? 'timeout' : success ? 'completed' : 'failed',
      success,
      stdout: stdout.text,
      stderr: stderr.text,
      exit_code: exitCode,
      execution_time: typeof r.execution_time === 'number' ? r.execution_time : (Date.now() - started) / 1000,
      timestamp: rfc3339(),
      ...(stdout.truncated || r.stdout_truncated === true ? { stdout_truncated: true } : {}),
      ...(stderr.truncated || r.stderr_truncated === true ? { stderr_truncated: true } : {}),
      ...(error === '' ? {} : { error }),
    };
  }

  /**
   * POSTs the result; retries network errors, timeouts, 429 and 5xx after
   * each of `retryDelaysMs` (with jitter). Redirects are not followed. Each
   * attempt is signed with its own timestamp.
   */
  async #deliver(job: Job, result: CallbackBody): Promise<void> {
    const body = JSON.stringify(result);
    const host = new URL(job.callbackURL).host;
    const attempts = this.#options.retryDelaysMs.length + 1;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const timestamp = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = {
        ...job.callbackHeaders,
        'content-type': 'application/json',
        'x-hopx-timestamp': String(timestamp),
        ...(job.secret === undefined ? {} : { 'x-hopx-signature': signWebhook(job.secret, timestamp, body) }),
      };
      let outcome: string;
      let retry: boolean;
      try {
        const res = await fetch(job.callbackURL, {
          method: 'POST',
          headers,
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.#options.attemptTimeoutMs),
        });
        await res.body?.cancel().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          this.#deps.log.info(`async ${job.id}: ${result.status}, delivered to ${host} (${res.status})`);
          return;
        }
        outcome = `answered ${res.status}`;
        retry = res.status >= 500 || res.status === 429;
      } catch (err) {
        outcome = `failed: ${(err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message}`;
        retry = true;
      }
      const wait = this.#options.retryDelaysMs[attempt - 1];
      if (!retry || wait === undefined) {
        this.#deps.log.warn(`async ${job.id}: callback to ${host} ${outcome}; giving up after ${attempt} attempt(s)`);
        return;
      }
      await delay(wait * (0.8 + Math.random() * 0.4));
    }
  }
}
