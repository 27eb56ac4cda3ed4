import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { fileListResponseSchema, fileReadResponseSchema } from '@warren/protocol';
import { z } from 'zod';
import { requestOptions } from './client.ts';
import { StreamError } from './errors.ts';
import type { AgentLink } from './internal/agent.ts';
import type { RequestOptions } from './internal/http.ts';
import { multipart } from './internal/multipart.ts';
import { takeNodeBody } from './internal/node-fetch.ts';
import type { FrameStream } from './internal/ws.ts';

/** A file or directory in the sandbox. */
export interface FileInfo {
  name: string;
  /** Absolute path in the sandbox. */
  path: string;
  /** Size in bytes. */
  size: number;
  isDir: boolean;
  isSymlink: boolean;
  modifiedAt: Date;
  /** Like `-rw-r--r--`. */
  permissions: string;
  /** Octal mode, like `0644`. */
  mode: string;
}

/** A change `watch()` reports. */
export interface FileChange {
  /** What happened. */
  event: 'created' | 'modified' | 'deleted' | 'renamed';
  /** Absolute path in the sandbox. */
  path: string;
  /** For `renamed`: the path before. */
  oldPath: string | undefined;
  isDir: boolean;
  timestamp: Date;
}

/** Data `write` accepts: text, bytes, or a stream of bytes (streamed, never held whole). */
export type WriteData = string | Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** Options of {@link Files.read}. */
export interface ReadOptions<F extends 'text' | 'bytes' | 'stream'> extends RequestOptions {
  /** How to return the content. @default 'text' */
  format?: F;
}

/** Time an upload may take until the agent answers (the whole body is sent first), unless `timeoutMs` says otherwise. */
const UPLOAD_TIMEOUT_MS = 30 * 60_000;

/**
 * Size of the pieces an upload reads and sends, and of a download's write buffer: fewer, larger reads and
 * writes cost less per byte on every hop (a download's socket is paused whenever the buffer is full).
 */
const TRANSFER_CHUNK_BYTES = 1024 * 1024;

/** Byte arrays up to this size are written as base64 JSON; larger ones are uploaded. */
const INLINE_WRITE_BYTES = 4 * 1024 * 1024;

const existsSchema = z.looseObject({ exists: z.boolean() });
const okSchema = z.looseObject({});
const uploadSchema = z.looseObject({ path: z.string(), size: z.number() });
const changeSchema = z.looseObject({
  type: z.literal('change'),
  path: z.string(),
  event: z.enum(['created', 'modified', 'deleted', 'renamed']),
  is_dir: z.boolean().optional(),
  old_path: z.string().optional(),
  timestamp: z.string().optional(),
});

function toAsyncIterable(data: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  if (Symbol.asyncIterator in data) return data as AsyncIterable<Uint8Array>;
  return Readable.fromWeb(data as unknown as WebReadableStream<Uint8Array>) as AsyncIterable<Uint8Array>;
}

/**
 * A live stream of file changes. Iterate it; `close()`, leaving the iteration
 * or aborting `signal` stops watching.
 */
export class FileWatch implements AsyncIterable<FileChange> {
  readonly #frames: Promise<FrameStream>;
  #closed = false;

  /** @internal */
  constructor(frames: Promise<FrameStream>) {
    this.#frames = frames;
    frames.then(
      (f) => {
        if (this.#closed) f.close();
      },
      () => undefined,
    );
  }

  /** Resolves once the watch is connected; rejects when it cannot be (e.g. `SandboxNotRunningError`). */
  async ready(): Promise<void> {
    await this.#frames;
  }

  /** Stops watching. */
  close(): void {
    this.#closed = true;
    this.#frames.then(
      (f) => f.close(),
      () => undefined,
    );
  }

  async *[Symbol.asyncIterator](): AsyncIterator<FileChange> {
    const frames = await this.#frames;
    for await (const frame of frames) {
      if (frame.type === 'error') {
        throw new StreamError(String(frame.error ?? 'watch failed'), frame.code as string | undefined);
      }
      const c = changeSchema.safeParse(frame);
      if (!c.success) continue;
      yield {
        event: c.data.event,
        path: c.data.path,
        oldPath: c.data.old_path,
        isDir: c.data.is_dir ?? false,
        timestamp: c.data.timestamp ? new Date(c.data.timestamp) : new Date(),
      };
    }
  }
}

/** Reads, writes and watches files in the sandbox (paths under `/workspace` or `/tmp`). */
export class Files {
  readonly #agent: AgentLink;

  /** @internal */
  constructor(agent: AgentLink) {
    this.#agent = agent;
  }

  /**
   * Reads a file as text (default), bytes, or a stream of bytes.
   * @throws {FileNotFoundError} when it does not exist.
   * @example
   * const text = await sandbox.files.read('/workspace/out.txt');
   * const png = await sandbox.files.read('/workspace/plot.png', { format: 'bytes' });
   */
  async read(path: string, options?: ReadOptions<'text'>): Promise<string>;
  async read(path: string, options: ReadOptions<'bytes'>): Promise<Uint8Array>;
  async read(path: string, options: ReadOptions<'stream'>): Promise<ReadableStream<Uint8Array>>;
  async read(
    path: string,
    options: ReadOptions<'text' | 'bytes' | 'stream'> = {},
  ): Promise<string | Uint8Array | ReadableStream<Uint8Array>> {
    const format = options.format ?? 'text';
    if (format === 'text') {
      const r = await this.#agent.http.json(
        { method: 'GET', path: '/files/read', query: { path }, ...requestOptions(options) },
        fileReadResponseSchema,
      );
      return r.content;
    }
    const res = await this.#download(path, options, format === 'stream');
    if (format === 'bytes') return new Uint8Array(await res.arrayBuffer());
    if (!res.body) return new ReadableStream({ start: (c) => c.close() });
    return res.body;
  }

  /**
   * Writes a file (parent directories are created). Text and small byte arrays
   * go in one JSON request; streams and large byte arrays are uploaded, streamed.
   * @returns the absolute path written.
   */
  async write(path: string, data: WriteData, options: RequestOptions = {}): Promise<{ path: string; size: number }> {
    if (typeof data === 'string' || (data instanceof Uint8Array && data.byteLength <= INLINE_WRITE_BYTES)) {
      const body =
        typeof data === 'string'
          ? { path, content: data, overwrite: true }
          : {
              path,
              content: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64'),
              encoding: 'base64',
              overwrite: true,
            };
      const r = await this.#agent.http.json(
        { method: 'POST', path: '/files/write', json: body, idempotent: true, ...requestOptions(options) },
        uploadSchema,
      );
      return { path: r.path, size: r.size };
    }
    if (data instanceof Uint8Array) {
      // Slices share the array's memory: nothing is copied.
      const slices = (async function* () {
        for (let at = 0; at < data.byteLength; at += TRANSFER_CHUNK_BYTES)
          yield data.subarray(at, at + TRANSFER_CHUNK_BYTES);
      })();
      return this.#uploadStream(path, slices, options, data.byteLength);
    }
    return this.#uploadStream(path, toAsyncIterable(data), options);
  }

  /**
   * Uploads a local file, streamed from disk (never held in memory whole).
   * @example await sandbox.files.upload('./data.csv', '/workspace/data.csv');
   */
  async upload(
    localPath: string,
    remotePath: string,
    options: RequestOptions = {},
  ): Promise<{ path: string; size: number }> {
    const info = await stat(localPath);
    if (!info.isFile()) {
      // A pipe or a device: its length is known only at its end.
      return this.#uploadStream(
        remotePath,
        createReadStream(localPath, { highWaterMark: TRANSFER_CHUNK_BYTES }),
        options,
      );
    }
    const content =
      info.size === 0
        ? (async function* (): AsyncGenerator<Uint8Array> {})()
        : createReadStream(localPath, { highWaterMark: TRANSFER_CHUNK_BYTES, start: 0, end: info.size - 1 });
    return this.#uploadStream(remotePath, content, options, info.size);
  }

  /**
   * Downloads a file to a local path, streamed to disk.
   * @returns the number of bytes written.
   * @example await sandbox.files.download('/workspace/plot.png', './plot.png');
   */
  async download(remotePath: string, localPath: string, options: RequestOptions = {}): Promise<number> {
    const res = await this.#download(remotePath, options, true);
    // Straight from Node's answer to the file when it can be (no web stream between them).
    const source =
      takeNodeBody(res) ??
      (res.body ? Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>) : Readable.from([]));
    const file = createWriteStream(localPath, { highWaterMark: TRANSFER_CHUNK_BYTES });
    await pipeline(source, file, options.signal ? { signal: options.signal } : {});
    return file.bytesWritten;
  }

  /** `GET /files/download`, its answer unread; `streamed` sends it over `node:http` (see `streamAnswer`). */
  #download(path: string, options: RequestOptions, streamed: boolean): Promise<Response> {
    return this.#agent.http.send({
      method: 'GET',
      path: '/files/download',
      query: { path },
      streamAnswer: streamed,
      ...requestOptions(options),
    });
  }

  async #uploadStream(
    path: string,
    source: AsyncIterable<Uint8Array>,
    options: RequestOptions,
    size?: number,
  ): Promise<{ path: string; size: number }> {
    const { body, type, length } = multipart(path, source, size);
    const headers: Record<string, string> = { 'content-type': type };
    if (length !== undefined) headers['content-length'] = String(length);
    const r = await this.#agent.http.json(
      {
        method: 'POST',
        path: '/files/upload',
        body,
        headers,
        ...requestOptions(options),
        timeoutMs: options.timeoutMs ?? UPLOAD_TIMEOUT_MS,
      },
      uploadSchema,
    );
    return { path: r.path, size: r.size };
  }

  /** Lists a directory. @default path '/workspace' */
  async list(path = '/workspace', options: RequestOptions = {}): Promise<FileInfo[]> {
    const r = await this.#agent.http.json(
      { method: 'GET', path: '/files/list', query: { path }, ...requestOptions(options) },
      fileListResponseSchema,
    );
    return r.files.map((f) => ({
      name: f.name,
      path: f.path,
      size: f.size,
      isDir: f.is_dir,
      isSymlink: f.is_symlink,
      modifiedAt: new Date(f.modified),
      permissions: f.permissions,
      mode: f.mode,
    }));
  }

  /** Whether a file or directory exists. */
  async exists(path: string, options: RequestOptions = {}): Promise<boolean> {
    const r = await this.#agent.http.json(
      { method: 'GET', path: '/files/exists', query: { path }, ...requestOptions(options) },
      existsSchema,
    );
    return r.exists;
  }

  /**
   * Removes a file or a directory tree.
   * @throws {FileNotFoundError} when it does not exist.
   */
  async remove(path: string, options: RequestOptions = {}): Promise<void> {
    await this.#agent.http.json(
      { method: 'DELETE', path: '/files/remove', query: { path }, ...requestOptions(options) },
      okSchema,
    );
  }

  /** Creates a directory and its parents (like `mkdir -p`). */
  async makeDir(path: string, options: RequestOptions = {}): Promise<void> {
    await this.#agent.http.json(
      { method: 'POST', path: '/files/mkdir', json: { path }, idempotent: true, ...requestOptions(options) },
      okSchema,
    );
  }

  /**
   * Watches a directory tree for changes (recursively). The agent sends no
   * acknowledgement, so changes made right after `ready()` may still be missed.
   * @example
   * for await (const change of sandbox.files.watch('/workspace')) console.log(change.event, change.path);
   */
  watch(path = '/workspace', options: RequestOptions = {}): FileWatch {
    return new FileWatch(this.#agent.stream('/files/watch', [{ action: 'watch', path }], requestOptions(options)));
  }
}
