import { agentErrorBody, ErrorCode, ServiceError } from '@warren/protocol';
import type { ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type AppContext, type AppEnv, setAnswerHeader } from './app-env.ts';
import { newRequestId } from './request-id.ts';

function send(c: AppContext, err: ServiceError): Response {
  const id = c.get('requestId') ?? newRequestId();
  setAnswerHeader(c, 'X-Request-ID', id);
  return c.json(agentErrorBody(err, id), err.status as ContentfulStatusCode);
}

function fromHTTPStatus(status: number, message: string): ServiceError {
  if (status === 413) return new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, 'Request body too large');
  if (status === 401) return new ServiceError(ErrorCode.TOKEN_INVALID, message || 'Unauthorized');
  if (status === 404) return new ServiceError(ErrorCode.NOT_FOUND, message || 'Not found');
  if (status >= 400 && status < 500) {
    return new ServiceError(ErrorCode.INVALID_REQUEST, message || 'Bad request', { status });
  }
  return new ServiceError(ErrorCode.INTERNAL_ERROR, 'Internal error');
}

/**
 * The one error handler: a `ServiceError` becomes the agent error envelope with
 * its status; anything else is logged and answered 500 `INTERNAL_ERROR`
 * without a stack.
 */
export function onError(log: (line: string) => void): ErrorHandler<AppEnv> {
  return (err, c) => {
    if (err instanceof ServiceError) return send(c, err);
    if (err instanceof HTTPException) {
      return send(c, fromHTTPStatus(err.status, err.status < 500 ? err.message : ''));
    }
    log(`agent: ${c.req.method} ${c.req.path} failed: ${err.stack ?? String(err)}`);
    return send(c, new ServiceError(ErrorCode.INTERNAL_ERROR, 'Internal error'));
  };
}

/** Answers an unknown route with the 404 `NOT_FOUND` envelope. */
export const notFound: NotFoundHandler<AppEnv> = (c) =>
  send(c, new ServiceError(ErrorCode.NOT_FOUND, `Not found: ${c.req.method} ${c.req.path}`));
