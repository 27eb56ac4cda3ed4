import { realpath } from 'node:fs/promises';
import { ErrorCode, fileWatchStartSchema, rfc3339, ServiceError } from '@warren/protocol';
import type { RawData, WebSocket } from 'ws';
import type { AgentDeps } from '../deps.ts';
import { parseWith } from '../http/body.ts';
import { displayPath, TreeWatcher } from '../services/file-watcher.ts';
import { errorFrame, parseFrame } from './frames.ts';
import { PacedSender } from './paced-sender.ts';

/** Change frames queued for a slow client beyond which further changes are dropped. */
const MAX_QUEUED_CHANGE_BYTES = 4 * 1024 * 1024;
/** Trees one socket may watch at once. */
const MAX_WATCHES_PER_SOCKET = 16;

/**
 * `/files/watch` (PROTOCOL §11.4): each `{action:"watch", path}` frame starts
 * watching a directory tree inside the allowed roots (no acknowledgement is
 * sent: the SDKs hand every frame to the user). Every change is sent as
 * `{type:"change", path, event: created|modified|deleted|renamed, is_dir,
 * old_path?, timestamp}`. A bad path gets an `error` frame. Watches end when
 * the socket closes.
 */
export function handleFileWatch(ws: WebSocket, _req: unknown, deps: AgentDeps): void {
  let overflowed = false;
  const sender = new PacedSender(ws);
  const watchers: TreeWatcher[] = [];
  const warn = (message: string) => sender.send({ type: 'warning', message, timestamp: rfc3339() });

  const start = async (raw: unknown) => {
    const { path } = parseWith(fileWatchStartSchema, raw);
    if (watchers.length >= MAX_WATCHES_PER_SOCKET) {
      throw new ServiceError(ErrorCode.INVALID_REQUEST, `At most ${MAX_WATCHES_PER_SOCKET} watches per connection`);
    }
    const shown = await deps.guard.resolve(path);
    const real = await realpath(shown).catch(() => {
      throw new ServiceError(ErrorCode.DIRECTORY_NOT_FOUND, `Directory not found: ${shown}`, { path: shown });
    });
    const watcher = new TreeWatcher(
      real,
      (change) => {
        if (sender.queuedBytes > MAX_QUEUED_CHANGE_BYTES) {
          if (!overflowed) warn('the client reads changes too slowly; some were not reported');
          overflowed = true;
          return;
        }
        overflowed = false;
        sender.send({
          type: 'change',
          path: displayPath(change.path, real, shown),
          event: change.event,
          is_dir: change.isDir,
          ...(change.oldPath === undefined ? {} : { old_path: displayPath(change.oldPath, real, shown) }),
          timestamp: rfc3339(),
        });
      },
      { onWarning: warn },
    );
    try {
      await watcher.start();
    } catch (err) {
      watcher.close();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR' || code === 'ENOENT') {
        throw new ServiceError(ErrorCode.DIRECTORY_NOT_FOUND, `Not a directory: ${shown}`, { path: shown });
      }
      throw new ServiceError(ErrorCode.FILE_OPERATION_FAILED, `Cannot watch ${shown}: ${(err as Error).message}`, {
        path: shown,
      });
    }
    if (ws.readyState !== ws.OPEN) watcher.close();
    else watchers.push(watcher);
  };

  ws.on('message', (data: RawData) => {
    const frame = parseFrame(data);
    if (frame === undefined) return;
    start(frame).catch((err: unknown) => sender.send(errorFrame(err, 'INVALID_REQUEST')));
  });
  ws.once('close', () => {
    for (const w of watchers) w.close();
    watchers.length = 0;
  });
}
