/** An error meant for the person at the terminal: printed as its message, no stack (unless `--debug`). */
export class CLIError extends Error {
  /** Exit status the CLI ends with. @default 1 */
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CLIError';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** An error answer of the Warren server or a sandbox agent. */
export class APIError extends CLIError {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | undefined;
  readonly details: Record<string, unknown>;
  constructor(
    status: number,
    code: string,
    message: string,
    requestId: string | undefined,
    details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }

  /**
   * Builds the error from a response body in either envelope (control plane:
   * nested `error` object plus top-level `code`/`message`; agent: flat).
   */
  static from(status: number, body: unknown, headers: Headers): APIError {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const nested = (typeof b.error === 'object' && b.error !== null ? b.error : {}) as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    const message =
      str(b.message) ??
      str(nested.message) ??
      str(b.error) ??
      (typeof body === 'string' ? str(body.trim()) : undefined) ??
      `HTTP ${status}`;
    const code = str(b.code) ?? str(nested.code) ?? `HTTP_${status}`;
    const requestId = headers.get('x-request-id') ?? str(b.request_id) ?? str(nested.request_id);
    const details = (typeof nested.details === 'object' && nested.details !== null ? nested.details : b.details) as
      | Record<string, unknown>
      | undefined;
    return new APIError(status, code, message.slice(0, 2000), requestId, details ?? {});
  }
}

/** The server could not be reached at all. */
export class ConnectionError extends CLIError {
  constructor(url: string, cause: unknown) {
    const code = causeCode(cause);
    super(`cannot reach the Warren server at ${url}${code ? ` (${code})` : ''}; is it running? (warren server)`, {
      cause,
    });
    this.name = 'ConnectionError';
  }
}

/** The most specific reason in an error's `cause` chain: a system error code, else the innermost message. */
function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  let message: string | undefined;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const nested = (e as { errors?: unknown[] }).errors?.[0] as { code?: unknown } | undefined;
    if (typeof nested?.code === 'string') return nested.code;
    if (e instanceof Error && e.message) message = e.message;
    e = (e as { cause?: unknown }).cause;
  }
  return message;
}

/** The line printed for an error: `message (code, request id)`. */
export function describeError(err: unknown): string {
  if (err instanceof APIError) {
    return `${err.message} (${[err.code, err.requestId].filter(Boolean).join(', ')})`;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
