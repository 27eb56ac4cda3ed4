import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  ErrorCode,
  fileListQuerySchema,
  filePathQuerySchema,
  fileWriteRequestSchema,
  mkdirRequestSchema,
  ServiceError,
  uploadFieldsSchema,
} from '@warren/protocol';
import { Hono } from 'hono';
import type { AgentDeps } from '../deps.ts';
import { type AppEnv, nodeResponse, requestHeader } from '../http/app-env.ts';
import { cappedBody, parseWith, readJson, readQuery } from '../http/body.ts';
import { multipartBoundary, type PartSink, readMultipart } from '../http/multipart.ts';
import { alreadySent } from '../http/node-server.ts';
import { sendFile } from '../http/send-file.ts';
import type { FileDownload } from '../services/file-service.ts';

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** Largest text field of an upload (the `path`). */
const MAX_FIELD_BYTES = 64 * 1024;

interface ReceivedUpload {
  fields: Map<string, string>;
  /** The first `file` part, stored in a temporary file. */
  file: { name: string; tempPath: string } | undefined;
  /** Removes the temporary file if it is still there. */
  discard: () => Promise<void>;
}

/** Reads a multipart upload: text fields into memory (bounded), the `file` part into a temporary file. */
async function receiveUpload(body: AsyncIterable<Uint8Array>, boundary: string): Promise<ReceivedUpload> {
  const tempPath = join(tmpdir(), `.warren-upload-${randomBytes(12).toString('hex')}`);
  const fields = new Map<string, string>();
  let file: ReceivedUpload['file'];
  let handle: FileHandle | undefined;
  const discard = async () => {
    await handle?.close().catch(() => undefined);
    await rm(tempPath, { force: true });
  };
  try {
    await readMultipart(body, boundary, async (part) => {
      if (part.name === 'file' && file === undefined) {
        file = { name: part.filename ?? '', tempPath };
        handle = await open(tempPath, 'wx', 0o600);
        return fileSink(handle);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      return {
        write: async (chunk) => {
          size += chunk.length;
          if (size > MAX_FIELD_BYTES)
            throw new ServiceError(ErrorCode.INVALID_REQUEST, `Invalid ${part.name}: too long`);
          chunks.push(chunk);
        },
        end: async () => {
          if (!fields.has(part.name)) fields.set(part.name, Buffer.concat(chunks).toString('utf8'));
        },
      };
    });
  } catch (err) {
    await discard();
    throw err;
  }
  return { fields, file, discard };
}

/** Size of each of an upload's two write buffers. */
const UPLOAD_BUFFER_BYTES = 4 * 1024 * 1024;

/** Writes all of `data` at the file's position. */
async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; ) off += (await handle.write(data, off)).bytesWritten;
}

/**
 * Writes a part's bytes to an open file (closed by `discard`, or by the upload once it is stored)
 * through two reused buffers: one fills while the other is written. The body's chunks are copied
 * out at once, so they die young instead of being held (and promoted) until a large write: far less
 * garbage collection than writing them in place. A failed write fails the next `write` or `end`.
 */
function fileSink(handle: FileHandle): PartSink {
  const buffers = [Buffer.allocUnsafe(UPLOAD_BUFFER_BYTES), Buffer.allocUnsafe(UPLOAD_BUFFER_BYTES)] as const;
  let current = 0;
  let filled = 0;
  let writing: Promise<void> = Promise.resolve();
  const flush = async () => {
    // The other buffer is filled next: its own write must be done first.
    await writing;
    writing = writeAll(handle, buffers[current]!.subarray(0, filled));
    // Handled here so a failure while the body is still being read is not an unhandled rejection.
    writing.catch(() => undefined);
    current ^= 1;
    filled = 0;
  };
  return {
    write: async (chunk) => {
      for (let off = 0; off < chunk.length; ) {
        const n = chunk.copy(buffers[current]!, filled, off);
        filled += n;
        off += n;
        if (filled === UPLOAD_BUFFER_BYTES) await flush();
      }
    },
    end: async () => {
      if (filled > 0) await flush();
      await writing;
    },
  };
}

/** The first `size` bytes of a file as a web stream (for in-process `app.request()`); closes the file. */
function webStream(file: FileDownload): ReadableStream<Uint8Array> {
  if (file.size === 0) {
    void file.handle.close().catch(() => undefined);
    return new Blob([]).stream();
  }
  return Readable.toWeb(
    file.handle.createReadStream({ start: 0, end: file.size - 1, highWaterMark: 1024 * 1024 }),
  ) as ReadableStream<Uint8Array>;
}

/** `/files/*`: the files API over the allowed roots (PROTOCOL §8.4). */
export function fileRoutes(deps: AgentDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const { files, config } = deps;

  app.get('/files/read', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.read(path));
  });

  app.get('/files/download', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    const file = await files.download(path);
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(file.size),
      'Content-Disposition': contentDisposition(file.name),
      'X-Request-ID': c.get('requestId'),
    };
    const outgoing = nodeResponse(c);
    if (outgoing) {
      // Straight from the file to the socket, without a web stream between them.
      outgoing.writeHead(200, headers);
      void sendFile(outgoing, file.handle, file.size);
      return alreadySent();
    }
    return new Response(webStream(file), { status: 200, headers });
  });

  app.post('/files/write', async (c) => {
    const params = await readJson(c, fileWriteRequestSchema, config.maxBodyBytes);
    return c.json(await files.write(params));
  });

  app.get('/files/list', async (c) => {
    const { path } = readQuery(c, fileListQuerySchema);
    return c.json(await files.list(path ?? config.workdir));
  });

  app.get('/files/exists', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.exists(path));
  });

  app.delete('/files/remove', async (c) => {
    const { path } = readQuery(c, filePathQuerySchema);
    return c.json(await files.remove(path));
  });

  app.post('/files/mkdir', async (c) => {
    const { path } = await readJson(c, mkdirRequestSchema, config.maxBodyBytes);
    return c.json(await files.mkdir(path));
  });

  app.post('/files/upload', async (c) => {
    const contentType = requestHeader(c, 'content-type') ?? '';
    if (!/^multipart\/form-data\b/i.test(contentType)) {
      throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid request: expected a multipart/form-data body');
    }
    // Streamed: the file part goes to a temporary file as it arrives, so an upload's size is bounded by
    // WARREN_AGENT_MAX_UPLOAD_BYTES and the disk, not by the agent's memory.
    const received = await receiveUpload(cappedBody(c, config.maxUploadBytes), multipartBoundary(contentType));
    try {
      const { path } = parseWith(uploadFieldsSchema, { path: received.fields.get('path') });
      if (!received.file)
        throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid file: the "file" part is required');
      return c.json(await files.upload(path, received.file));
    } finally {
      await received.discard();
    }
  });

  return app;
}
