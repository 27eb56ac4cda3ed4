/**
 * Error codes shared by the control plane and the in-sandbox agent, with the
 * HTTP status each one is answered with. A code without a status fails to compile.
 */
export const ErrorCode = {
  // Agent (Hopx VM agent codes)
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  INVALID_JSON: 'INVALID_JSON',
  MISSING_PARAMETER: 'MISSING_PARAMETER',
  PATH_NOT_ALLOWED: 'PATH_NOT_ALLOWED',
  FILE_NOT_FOUND: 'FILE_NOT_FOUND',
  FILE_ALREADY_EXISTS: 'FILE_ALREADY_EXISTS',
  DIRECTORY_NOT_FOUND: 'DIRECTORY_NOT_FOUND',
  FILE_OPERATION_FAILED: 'FILE_OPERATION_FAILED',
  INVALID_PATH: 'INVALID_PATH',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  COMMAND_FAILED: 'COMMAND_FAILED',
  EXECUTION_TIMEOUT: 'EXECUTION_TIMEOUT',
  EXECUTION_FAILED: 'EXECUTION_FAILED',
  PROCESS_NOT_FOUND: 'PROCESS_NOT_FOUND',
  DESKTOP_NOT_AVAILABLE: 'DESKTOP_NOT_AVAILABLE',
  INVALID_REQUEST: 'INVALID_REQUEST',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  NOT_FOUND: 'NOT_FOUND',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
  // Lifecycle
  SANDBOX_EXPIRED: 'SANDBOX_EXPIRED',
  SANDBOX_NOT_FOUND: 'SANDBOX_NOT_FOUND',
  SANDBOX_CREATING: 'SANDBOX_CREATING',
  SANDBOX_STOPPED: 'SANDBOX_STOPPED',
  SANDBOX_PAUSED: 'SANDBOX_PAUSED',
  SANDBOX_UNAVAILABLE: 'SANDBOX_UNAVAILABLE',
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  TOKEN_INVALID: 'TOKEN_INVALID',
  // Control plane
  AUTHENTICATION_REQUIRED: 'AUTHENTICATION_REQUIRED',
  INVALID_TOKEN: 'INVALID_TOKEN',
  RESOURCE_NOT_FOUND: 'RESOURCE_NOT_FOUND',
  TEMPLATE_NOT_FOUND: 'TEMPLATE_NOT_FOUND',
  CONFLICT: 'CONFLICT',
  RESOURCE_LIMIT_ERROR: 'RESOURCE_LIMIT_ERROR',
  FORBIDDEN: 'FORBIDDEN',
  RATE_LIMIT_EXCEEDED: 'RATE_LIMIT_EXCEEDED',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** HTTP status answered for each error code. */
export const errorStatus: Record<ErrorCode, number> = {
  METHOD_NOT_ALLOWED: 405,
  INVALID_JSON: 400,
  MISSING_PARAMETER: 400,
  PATH_NOT_ALLOWED: 403,
  FILE_NOT_FOUND: 404,
  FILE_ALREADY_EXISTS: 409,
  DIRECTORY_NOT_FOUND: 404,
  FILE_OPERATION_FAILED: 400,
  INVALID_PATH: 400,
  PERMISSION_DENIED: 403,
  COMMAND_FAILED: 400,
  EXECUTION_TIMEOUT: 408,
  EXECUTION_FAILED: 400,
  PROCESS_NOT_FOUND: 404,
  DESKTOP_NOT_AVAILABLE: 400,
  INVALID_REQUEST: 400,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  INTERNAL_ERROR: 500,
  SANDBOX_EXPIRED: 410,
  SANDBOX_NOT_FOUND: 404,
  SANDBOX_CREATING: 409,
  SANDBOX_STOPPED: 409,
  SANDBOX_PAUSED: 409,
  SANDBOX_UNAVAILABLE: 502,
  TOKEN_EXPIRED: 401,
  TOKEN_INVALID: 401,
  AUTHENTICATION_REQUIRED: 401,
  INVALID_TOKEN: 401,
  RESOURCE_NOT_FOUND: 404,
  TEMPLATE_NOT_FOUND: 404,
  CONFLICT: 409,
  RESOURCE_LIMIT_ERROR: 403,
  FORBIDDEN: 403,
  RATE_LIMIT_EXCEEDED: 429,
  SERVICE_UNAVAILABLE: 503,
};

/** An error a service throws; one error handler turns it into the wire envelope. */
export class ServiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;
  readonly path: string | undefined;
  /** Extra top-level fields of the envelope (e.g. `sandbox_id` on a 410). */
  readonly extra: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      details?: Record<string, unknown>;
      path?: string;
      status?: number;
      extra?: Record<string, unknown>;
    } = {},
  ) {
    super(message);
    this.name = 'ServiceError';
    this.code = code;
    this.status = options.status ?? errorStatus[code];
    this.details = options.details ?? {};
    this.path = options.path;
    this.extra = options.extra ?? {};
  }
}

/** RFC 3339 UTC timestamp without fraction, as the Python SDK parses it. */
export function rfc3339(date: Date | number = Date.now()): string {
  return new Date(date).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The flat error envelope (PROTOCOL §4.1, agent form): `error` is always a
 * string, `message` repeats it for the TS SDK.
 */
export function agentErrorBody(err: ServiceError, requestId: string): Record<string, unknown> {
  return {
    error: err.message,
    message: err.message,
    code: err.code,
    ...(err.path === undefined ? {} : { path: err.path }),
    request_id: requestId,
    timestamp: rfc3339(),
    details: err.details,
    ...err.extra,
  };
}

/**
 * The control-plane envelope (PROTOCOL §4.1 option B): nested `error` object for
 * the Python SDK, top-level `code`/`message` for the TS SDK.
 */
export function controlErrorBody(err: ServiceError, requestId: string): Record<string, unknown> {
  return {
    error: { code: err.code, message: err.message, request_id: requestId, details: err.details },
    code: err.code,
    message: err.message,
    request_id: requestId,
    ...err.extra,
  };
}
