import { ErrorCode, ServiceError } from '@warren/protocol';

/** One part's headers: the form field name and, for a file, its file name. */
export interface PartInfo {
  name: string;
  filename: string | undefined;
}

/** Receives a part's bytes as they arrive; `end` is called once the part is complete. */
export interface PartSink {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 16 * 1024;

function invalid(message: string): ServiceError {
  return new ServiceError(ErrorCode.INVALID_REQUEST, `Invalid multipart body: ${message}`);
}

/** The boundary of a `multipart/form-data` content type. @throws ServiceError INVALID_REQUEST without one. */
export function multipartBoundary(contentType: string): string {
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw invalid('no boundary in Content-Type');
  return boundary;
}

function partInfo(headerText: string): PartInfo {
  for (const line of headerText.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== 'content-disposition') continue;
    const value = line.slice(colon + 1);
    const name = /;\s*name="([^"]*)"/i.exec(value)?.[1] ?? /;\s*name=([^;\s]+)/i.exec(value)?.[1];
    const filename = /;\s*filename="([^"]*)"/i.exec(value)?.[1] ?? /;\s*filename=([^;\s]+)/i.exec(value)?.[1];
    if (name === undefined) throw invalid('a part has no name');
    return { name, filename };
  }
  throw invalid('a part has no Content-Disposition');
}

/** A view of a chunk as a Buffer, without copying it. */
function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Reads a `multipart/form-data` body as a stream, never holding more than a
 * header block and one boundary's worth of bytes: each part's content goes to
 * the sink `open` returns for it, in order, with backpressure. Content is
 * handed over as views of the body's own chunks (a sink may keep them; they
 * are never reused), so a large file part is not copied on its way through.
 * @throws ServiceError INVALID_REQUEST on a malformed body.
 */
export async function readMultipart(
  body: AsyncIterable<Uint8Array>,
  boundary: string,
  open: (part: PartInfo) => PartSink | Promise<PartSink>,
): Promise<void> {
  // The body starts with `--boundary`; every later delimiter is `\r\n--boundary`. Prefixing CRLF makes them alike.
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // Bytes at a chunk's end that may begin a delimiter completed by the next chunk.
  const keep = delimiter.length - 1;
  let buf: Buffer = Buffer.from(CRLF);
  let state: 'preamble' | 'after-delimiter' | 'headers' | 'body' | 'done' = 'preamble';
  let sink: PartSink | undefined;
  // Iterated by hand: leaving early must not destroy the source (an HTTP request whose answer is still to be sent).
  const reader = body[Symbol.asyncIterator]();
  for (;;) {
    const { done, value } = await reader.next();
    if (value && value.byteLength > 0) {
      const chunk = asBuffer(value);
      if (buf.length === 0) {
        buf = chunk;
      } else if (state === 'body' && chunk.length >= keep) {
        // `buf` is a part's last few bytes (< one delimiter). A delimiter starting in them ends within the
        // chunk's first `keep` bytes, so only those are joined to look for it; the chunk itself is not copied.
        const joined = Buffer.concat([buf, chunk.subarray(0, keep)]);
        const i = joined.indexOf(delimiter);
        if (i >= 0) {
          if (i > 0) await sink!.write(joined.subarray(0, i));
          await sink!.end();
          sink = undefined;
          state = 'after-delimiter';
          buf = chunk.subarray(i + delimiter.length - buf.length);
        } else {
          await sink!.write(buf);
          buf = chunk;
        }
      } else {
        buf = Buffer.concat([buf, chunk]);
      }
    }
    for (let progressed = true; progressed && state !== 'done'; ) {
      progressed = false;
      if (state === 'preamble') {
        const i = buf.indexOf(delimiter);
        if (i >= 0) {
          buf = buf.subarray(i + delimiter.length);
          state = 'after-delimiter';
          progressed = true;
        } else if (buf.length > delimiter.length) {
          buf = Buffer.from(buf.subarray(buf.length - delimiter.length));
        }
      } else if (state === 'after-delimiter') {
        if (buf.length < 2) break;
        if (buf[0] === 0x2d && buf[1] === 0x2d) {
          state = 'done';
        } else {
          // Transport padding (spaces/tabs) may follow a delimiter before its CRLF.
          const eol = buf.indexOf(CRLF);
          if (eol < 0) {
            if (buf.length > 1024) throw invalid('no line end after a boundary');
            break;
          }
          if (buf.subarray(0, eol).toString('latin1').trim() !== '') throw invalid('garbage after a boundary');
          buf = buf.subarray(eol + 2);
          state = 'headers';
          progressed = true;
        }
      } else if (state === 'headers') {
        const i = buf.indexOf(HEADER_END);
        if (i < 0) {
          if (buf.length > MAX_HEADER_BYTES) throw invalid('part headers too long');
          break;
        }
        sink = await open(partInfo(buf.subarray(0, i).toString('utf8')));
        buf = buf.subarray(i + HEADER_END.length);
        state = 'body';
        progressed = true;
      } else if (state === 'body') {
        const i = buf.indexOf(delimiter);
        if (i >= 0) {
          if (i > 0) await sink!.write(buf.subarray(0, i));
          await sink!.end();
          sink = undefined;
          buf = buf.subarray(i + delimiter.length);
          state = 'after-delimiter';
          progressed = true;
        } else if (buf.length > keep) {
          // Everything but a possible delimiter start at the end is content; that end is copied so the
          // chunk it came from is not held on to.
          await sink!.write(buf.subarray(0, buf.length - keep));
          buf = Buffer.from(buf.subarray(buf.length - keep));
        }
      }
    }
    if (done) {
      if (state !== 'done') throw invalid('the body ended before the closing boundary');
      return;
    }
    // After the closing boundary: the epilogue is read to its end and ignored (the body's size cap still holds).
    if (state === 'done') buf = Buffer.alloc(0);
  }
}
