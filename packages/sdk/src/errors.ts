import { errorEnvelopeSchema } from '@warren/protocol';

/** Root of every error the SDK throws. */
export class WarrenError extends Error {
  override readonly name: string = 'WarrenError';
}

/** Fields an {@link APIError} is built from. */
export interface APIErrorInit {
  /** HTTP status of the answer. */
  status: number;
  /** Machine-readable code from the error envelope, e.g. `FILE_NOT_FOUND`. */
  code: string | undefined;
  /** Request id the server answered with (`X-Request-ID`). */
  requestId: string | undefined;
  /** The parsed answer body, or its text when it was not JSON. */
  body: unknown;
  /** Answer headers. */
  headers: Headers;
}

/**
 * An HTTP answer with an error status. Subclasses by status:
 * {@link BadRequestError} 400, {@link AuthenticationError} 401,
 * {@link PermissionDeniedError} 403, {@link NotFoundError} 404,
 * {@link ConflictError} 409, {@link PayloadTooLargeError} 413,
 * {@link RateLimitError} 429, {@link InternalServerError} 5xx.
 */
export class APIError extends WarrenError {
  override readonly name: string = 'APIError';
  /** HTTP status of the answer. */
  readonly status: number;
  /** Machine-readable code from the error envelope, e.g. `FILE_NOT_FOUND`. */
  readonly code: string | undefined;
  /** Request id the server answered with (`X-Request-ID`). */
  readonly requestId: string | undefined;
  /** The parsed answer body, or its text when it was not JSON. */
  readonly body: unknown;
  /** Answer headers. */
  readonly headers: Headers;

  constructor(message: string, init: APIErrorInit) {
    super(message);
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.body = init.body;
    this.headers = init.headers;
  }

  /**
   * Builds the error subclass that fits an error answer: by `code` for the
   * domain errors ({@link SandboxNotFoundError}, {@link FileNotFoundError}), else by status.
   * @example
   * const err = APIError.from(404, { code: 'FILE_NOT_FOUND', message: 'File not found: /x' }, new Headers());
   * err instanceof FileNotFoundError // true
   */
  static from(status: number, body: unknown, headers: Headers): APIError {
    const parsed = errorEnvelopeSchema.safeParse(body);
    const env = parsed.success ? parsed.data : {};
    const nested = typeof env.error === 'object' ? env.error : undefined;
    const code = env.code ?? nested?.code;
    const text = typeof body === 'string' && body.trim() !== '' ? body.trim().slice(0, 500) : undefined;
    const message =
      env.message ??
      nested?.message ??
      (typeof env.error === 'string' ? env.error : undefined) ??
      text ??
      `HTTP ${status}`;
    const init: APIErrorInit = {
      status,
      code,
      requestId: headers.get('x-request-id') ?? env.request_id ?? undefined,
      body,
      headers,
    };
    const full = `${message} (${status}${code ? ` ${code}` : ''})`;
    if (code === 'SANDBOX_NOT_FOUND' || code === 'SANDBOX_EXPIRED' || status === 410) {
      return new SandboxNotFoundError(full, init);
    }
    if (status === 404 && /sandbox .*not found/i.test(message) && code !== 'FILE_NOT_FOUND') {
      return new SandboxNotFoundError(full, init);
    }
    if (code === 'FILE_NOT_FOUND' || code === 'DIRECTORY_NOT_FOUND') {
      return new FileNotFoundError(full, { ...init, path: env.path });
    }
    if (code === 'TEMPLATE_NOT_FOUND') return new TemplateNotFoundError(full, init);
    if (code === 'SANDBOX_PAUSED' || code === 'SANDBOX_STOPPED' || code === 'SANDBOX_CREATING') {
      return new SandboxNotRunningError(full, init);
    }
    switch (status) {
      case 400:
        return new BadRequestError(full, init);
      case 401:
        return new AuthenticationError(full, init);
      case 403:
        return new PermissionDeniedError(full, init);
      case 404:
        return new NotFoundError(full, init);
      case 409:
        return new ConflictError(full, init);
      case 413:
        return new PayloadTooLargeError(full, init);
      case 429:
        return new RateLimitError(full, init);
      default:
        return status >= 500 ? new InternalServerError(full, init) : new APIError(full, init);
    }
  }
}

/** 400: the request was invalid. */
export class BadRequestError extends APIError {
  override readonly name: string = 'BadRequestError';
}

/** 401: the API key or sandbox token was missing, invalid or expired. */
export class AuthenticationError extends APIError {
  override readonly name: string = 'AuthenticationError';
}

/** 403: the caller may not do this (a path outside the allowed roots, a limit reached). */
export class PermissionDeniedError extends APIError {
  override readonly name: string = 'PermissionDeniedError';
}

/** 404: what the request named does not exist. */
export class NotFoundError extends APIError {
  override readonly name: string = 'NotFoundError';
}

/** 409: the resource is in a state that does not allow this. */
export class ConflictError extends APIError {
  override readonly name: string = 'ConflictError';
}

/** 413: the request body is larger than the server accepts. */
export class PayloadTooLargeError extends APIError {
  override readonly name: string = 'PayloadTooLargeError';
}

/** 429: too many requests; retried automatically for idempotent requests. */
export class RateLimitError extends APIError {
  override readonly name: string = 'RateLimitError';
}

/** 5xx: the server failed; retried automatically for idempotent requests. */
export class InternalServerError extends APIError {
  override readonly name: string = 'InternalServerError';
}

/** The sandbox does not exist (never did, was killed, or expired). */
export class SandboxNotFoundError extends NotFoundError {
  override readonly name: string = 'SandboxNotFoundError';
}

/** The sandbox is paused, stopped or still being created, so its agent cannot answer. */
export class SandboxNotRunningError extends ConflictError {
  override readonly name: string = 'SandboxNotRunningError';
}

/** The template does not exist. */
export class TemplateNotFoundError extends NotFoundError {
  override readonly name: string = 'TemplateNotFoundError';
}

/** A file or directory inside the sandbox does not exist. */
export class FileNotFoundError extends NotFoundError {
  override readonly name: string = 'FileNotFoundError';
  /** The sandbox path the agent reported, when it did. */
  readonly path: string | undefined;

  constructor(message: string, init: APIErrorInit & { path?: string | undefined }) {
    super(message, init);
    this.path = init.path;
  }
}

/** The server could not be reached, or the connection broke before an answer. */
export class APIConnectionError extends WarrenError {
  override readonly name: string = 'APIConnectionError';

  constructor(message = 'Connection error', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The request took longer than its `timeoutMs`. */
export class APITimeoutError extends APIConnectionError {
  override readonly name: string = 'APITimeoutError';

  constructor(message = 'Request timed out', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller's `signal` aborted the request. */
export class APIUserAbortError extends WarrenError {
  override readonly name: string = 'APIUserAbortError';

  constructor(message = 'Request was aborted', options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A response did not have the documented shape. */
export class InvalidResponseError extends WarrenError {
  override readonly name: string = 'InvalidResponseError';
}

/** What a finished command produced. */
export interface CommandResult {
  /** Exit code; 137 (128 + SIGKILL) after {@link CommandHandle.kill}. */
  exitCode: number;
  /** Everything the command wrote to stdout. */
  stdout: string;
  /** Everything the command wrote to stderr. */
  stderr: string;
  /** True when the command ran past its timeout and was killed. */
  timedOut: boolean;
  /** True when the caller killed the command. */
  killed: boolean;
  /** Time the command ran, in milliseconds, as the agent measured it. */
  durationMs: number;
  /** The agent's message when the command could not start or timed out. */
  error: string | undefined;
}

/** A command exited with a non-zero code; carries the same fields as its {@link CommandResult}. */
export class CommandExitError extends WarrenError implements CommandResult {
  override readonly name: string = 'CommandExitError';
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly killed: boolean;
  readonly durationMs: number;
  readonly error: string | undefined;
  /** The full result. */
  readonly result: CommandResult;

  constructor(command: string, result: CommandResult) {
    const why = result.timedOut ? 'timed out' : result.killed ? 'was killed' : `exited with code ${result.exitCode}`;
    const tail = result.stderr.trim().split('\n').slice(-3).join('\n');
    super(`Command ${why}: ${command}${tail ? `\n${tail}` : ''}`);
    this.exitCode = result.exitCode;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.timedOut = result.timedOut;
    this.killed = result.killed;
    this.durationMs = result.durationMs;
    this.error = result.error;
    this.result = result;
  }
}

/** A streamed execution or a WebSocket stream reported an error frame. */
export class StreamError extends WarrenError {
  override readonly name: string = 'StreamError';
  /** The code of the error frame, e.g. `EXECUTION_TIMEOUT`. */
  readonly code: string | undefined;

  constructor(message: string, code?: string) {
    super(code ? `${message} (${code})` : message);
    this.code = code;
  }
}

/** A template build failed; `logs` holds the build log. */
export class TemplateBuildError extends WarrenError {
  override readonly name: string = 'TemplateBuildError';
  /** The build's log text. */
  readonly logs: string;

  constructor(message: string, logs: string) {
    super(message);
    this.logs = logs;
  }
}

/** The running agent has no way to do what was asked. */
export class UnsupportedError extends WarrenError {
  override readonly name: string = 'UnsupportedError';
}
