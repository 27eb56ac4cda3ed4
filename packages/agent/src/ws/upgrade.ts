import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ErrorCode, ServiceError } from '@warren/protocol';
import { type WebSocket, WebSocketServer } from 'ws';
import type { AgentDeps } from '../deps.ts';
import { checkBearer } from '../http/auth.ts';
import { handleCommandStream, handleExecuteStream } from './exec-stream.ts';
import { handleFileWatch } from './file-watch.ts';
import { rejectUpgrade } from './reject.ts';
import { handleTerminal } from './terminal.ts';
import { handleTunnel, TUNNEL_PATH, TUNNEL_PROTOCOL } from './tunnel.ts';

/** A WebSocket endpoint: gets the open socket and the upgrade request. */
export type WebSocketHandler = (ws: WebSocket, req: IncomingMessage, deps: AgentDeps) => void;

/** WebSocket endpoints by path (PROTOCOL §11). `/stream` is the agent spec's older name of `/execute/stream`. */
const ENDPOINTS: Readonly<Record<string, WebSocketHandler>> = {
  '/execute/stream': handleExecuteStream,
  '/stream': handleExecuteStream,
  '/commands/stream': handleCommandStream,
  '/terminal': handleTerminal,
  '/files/watch': handleFileWatch,
};

/** Paths answered on upgrade requests, for `/info`. */
export const UPGRADE_PATHS: readonly string[] = [...Object.keys(ENDPOINTS), TUNNEL_PATH];

/**
 * The HTTP server's `upgrade` listener: checks the sandbox token (401 before
 * upgrading), then hands WebSocket upgrades to their endpoint and
 * `Upgrade: warren-tunnel` requests to the port tunnel.
 */
export function createUpgradeHandler(deps: AgentDeps): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: deps.config.maxBodyBytes, perMessageDeflate: false });
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://agent');
    const denied = checkBearer(req.headers.authorization, {
      key: deps.config.tokenKey,
      sandboxId: deps.config.sandboxId,
    });
    if (denied) {
      rejectUpgrade(socket, denied);
      return;
    }
    const protocol = (req.headers.upgrade ?? '').toLowerCase();
    if (url.pathname === TUNNEL_PATH) {
      if (protocol !== TUNNEL_PROTOCOL) {
        rejectUpgrade(
          socket,
          new ServiceError(ErrorCode.INVALID_REQUEST, `${TUNNEL_PATH} needs Upgrade: ${TUNNEL_PROTOCOL}`),
        );
        return;
      }
      handleTunnel(req, socket, head, url, deps);
      return;
    }
    const handler = ENDPOINTS[url.pathname];
    if (!handler) {
      rejectUpgrade(socket, new ServiceError(ErrorCode.NOT_FOUND, `No WebSocket endpoint at ${url.pathname}`));
      return;
    }
    if (protocol !== 'websocket') {
      rejectUpgrade(socket, new ServiceError(ErrorCode.INVALID_REQUEST, `${url.pathname} needs Upgrade: websocket`));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const end = deps.stats.beginStream();
      ws.once('close', end);
      ws.on('error', () => ws.terminate());
      handler(ws, req, deps);
    });
  };
}
