import type { Duplex } from 'node:stream';
import { agentErrorBody, type ServiceError } from '@warren/protocol';
import { newRequestId } from '../http/request-id.ts';

/** Writes an HTTP error response on a socket that was not upgraded, and closes it. */
export function rejectUpgrade(socket: Duplex, err: ServiceError, requestId = newRequestId()): void {
  const body = JSON.stringify(agentErrorBody(err, requestId));
  const reason = err.status === 401 ? 'Unauthorized' : err.status === 404 ? 'Not Found' : 'Error';
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `X-Request-ID: ${requestId}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
