import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

/** Read size of a download, and how many reads may be on their way to the socket at once. */
const CHUNK_BYTES = 1024 * 1024;
const CHUNKS_IN_FLIGHT = 4;

/**
 * Writes the first `size` bytes of an open file as the body of `res` (its
 * head already written) and ends it, then closes the file. The file is read
 * into a few buffers that are reused once their bytes reached the socket, so
 * a large file is sent with no allocation per chunk and at most
 * `CHUNKS_IN_FLIGHT` MiB held. A client that goes away, a failing read or a
 * file that shrank cuts the connection (the body is shorter than announced).
 */
export async function sendFile(res: ServerResponse, handle: FileHandle, size: number): Promise<void> {
  let gone = false;
  const closed = new Promise<void>((resolve) => {
    res.once('close', () => {
      gone = true;
      resolve();
    });
  });
  const buffers = Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, Math.ceil(size / CHUNK_BYTES)) }, () =>
    Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size)),
  );
  // Settles once a buffer's last write reached the socket (or failed): then it may be filled again.
  const flushed: Array<Promise<unknown> | undefined> = buffers.map(() => undefined);
  let sent = 0;
  try {
    for (let i = 0; sent < size && !gone; i = (i + 1) % buffers.length) {
      await Promise.race([flushed[i], closed]);
      if (gone) break;
      const buf = buffers[i]!;
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, size - sent), sent);
      if (bytesRead === 0) break;
      sent += bytesRead;
      flushed[i] = new Promise((resolve) => res.write(buf.subarray(0, bytesRead), resolve));
    }
    await Promise.race([Promise.all(flushed), closed]);
  } catch {
    // A failed read: the connection is cut below, so the client sees a short body rather than a wrong one.
    sent = -1;
  } finally {
    await handle.close().catch(() => undefined);
  }
  if (sent === size && !gone) res.end();
  else res.destroy();
}
