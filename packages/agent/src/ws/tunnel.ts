import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode, ServiceError } from '@warren/protocol';
import type { AgentDeps } from '../deps.ts';
import { rejectUpgrade } from './reject.ts';

/** Path of the port tunnel. */
export const TUNNEL_PATH = '/_warren/tunnel';
/** `Upgrade` protocol name of the port tunnel. */
export const TUNNEL_PROTOCOL = 'warren-tunnel';
/** How long connecting to the port may take. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The port tunnel: `GET /_warren/tunnel?port=N` with `Connection: Upgrade` and
 * `Upgrade: warren-tunnel` connects to 127.0.0.1:N inside the sandbox, answers
 * `101 Switching Protocols` and then pipes raw bytes both ways until either
 * side closes. When the port cannot be reached it answers 502 with the error
 * envelope instead (400 for a bad port).
 */
export function handleTunnel(_req: IncomingMessage, socket: Duplex, head: Buffer, url: URL, deps: AgentDeps): void {
  const raw = url.searchParams.get('port') ?? '';
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) {
    rejectUpgrade(socket, new ServiceError(ErrorCode.INVALID_REQUEST, 'port must be an integer from 1 to 65535'));
    return;
  }
  const upstream = connect({ host: '127.0.0.1', port });
  upstream.setNoDelay(true);
  upstream.setTimeout(CONNECT_TIMEOUT_MS, () => upstream.destroy(new Error('connect timed out')));
  let connected = false;
  const onEarlyClose = () => upstream.destroy();
  socket.once('close', onEarlyClose);

  upstream.once('connect', () => {
    connected = true;
    upstream.setTimeout(0);
    socket.off('close', onEarlyClose);
    const end = deps.stats.beginStream();
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
    const close = () => {
      end();
      upstream.destroy();
      socket.destroy();
    };
    upstream.once('close', close);
    socket.once('close', close);
  });
  upstream.on('error', (err: NodeJS.ErrnoException) => {
    if (connected) return; // 'close' follows and tears both sides down
    const reason = err.code ?? err.message;
    rejectUpgrade(
      socket,
      new ServiceError(ErrorCode.SANDBOX_UNAVAILABLE, `Cannot connect to port ${port} in the sandbox (${reason})`, {
        status: 502,
        details: { port, reason },
      }),
    );
  });
}
