import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';

/**
 * A multipart/form-data body with parts `path` and `file`, streamed from `content`. With the content's `size`
 * the body's length is known, so it goes with a `Content-Length` instead of chunked; content that then turns
 * out longer or shorter (a file changed while it was read) fails the upload instead of sending a wrong length.
 */
export function multipart(
  path: string,
  content: AsyncIterable<Uint8Array>,
  size?: number,
): { body: AsyncIterable<Uint8Array>; type: string; length: number | undefined } {
  const boundary = `warren-${randomBytes(12).toString('hex')}`;
  const name = posix.basename(path).replace(/["\r\n\\]/g, '_') || 'file';
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n${path}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  async function* body(): AsyncGenerator<Uint8Array> {
    yield head;
    let sent = 0;
    for await (const chunk of content) {
      sent += chunk.byteLength;
      if (size !== undefined && sent > size) break;
      yield chunk;
    }
    if (size !== undefined && sent !== size) {
      throw new Error(`${path}: the source changed while it was sent (${size} bytes expected, ${sent} read)`);
    }
    yield tail;
  }
  return {
    body: body(),
    type: `multipart/form-data; boundary=${boundary}`,
    length: size === undefined ? undefined : head.byteLength + size + tail.byteLength,
  };
}
