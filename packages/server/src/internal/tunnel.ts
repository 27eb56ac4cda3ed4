import { request } from 'node:http';
import type { Socket } from 'node:net';
import { ErrorCode, ServiceError } from '@warren/protocol';

/** Most of an agent's refusal body that is read for its message. */
const MAX_REFUSAL_BYTES = 16 * 1024;

/**
 * Opens the agent's port tunnel: `GET /_warren/tunnel?port=N` with
 * `Upgrade: warren-tunnel` over the agent's unix socket. Resolves with the
 * socket once the agent answered 101; from then on it is a raw TCP stream to
 * 127.0.0.1:N inside the sandbox.
 * @throws ServiceError SANDBOX_UNAVAILABLE (502) when the agent cannot be
 * reached, nothing listens on the port, or the handshake takes too long.
 */
export function openTunnel(
  socketPath: string,
  token: string,
  port: number,
  options: { timeoutMs: number },
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: ServiceError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = request({
      socketPath,
      method: 'GET',
      path: `/_warren/tunnel?port=${port}`,
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'warren-tunnel', authorization: `Bearer ${token}`, host: 'agent' },
    });
    const timer = setTimeout(
      () => fail(new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, `Connecting to port ${port} timed out`)),
      options.timeoutMs,
    );
    req.on('upgrade', (res, socket, head) => {
      if (settled || res.statusCode !== 101) {
        socket.destroy();
        fail(new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, 'Sandbox agent refused the tunnel'));
        return;
      }
      settled = true;
      clearTimeout(timer);
      // Until the caller attaches its own listeners, a reset must not become an uncaught error.
      socket.on('error', () => socket.destroy());
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => {
        let message = `Nothing is listening on port ${port} in the sandbox`;
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { message?: unknown; error?: unknown };
          const m = typeof body.message === 'string' ? body.message : body.error;
          if (typeof m === 'string' && m !== '') message = m.slice(0, 500);
        } catch {
          // keep the generic message
        }
        fail(new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, message, { details: { port } }));
      };
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_REFUSAL_BYTES) chunks.push(c);
        else done();
      });
      res.on('end', done);
      res.on('error', done);
    });
    req.on('error', () => fail(new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, 'Sandbox agent is not reachable')));
    req.end();
  });
}
