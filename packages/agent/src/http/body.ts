import { Readable } from 'node:stream';
import { ErrorCode, ServiceError } from '@warren/protocol';
import type { z } from 'zod';
import { type AppContext, nodeRequest, requestHeader } from './app-env.ts';
import { chunksOf } from './node-chunks.ts';

function tooLarge(maxBytes: number): ServiceError {
  return new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, `Request body exceeds ${maxBytes} bytes`, {
    details: { max_bytes: maxBytes },
  });
}

/** Rejects early when a declared `Content-Length` is over the limit. */
function checkDeclaredLength(c: AppContext, maxBytes: number): void {
  const declared = Number(requestHeader(c, 'content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
}

/**
 * Reads the whole request body, never holding more than `maxBytes` (from
 * Node's request like {@link cappedBody}: a web stream costs about a
 * millisecond per small body, and more on its first use).
 * @throws {ServiceError} `PAYLOAD_TOO_LARGE` past the limit.
 */
export async function readBodyBytes(c: AppContext, maxBytes: number): Promise<Buffer> {
  return concatChunks(cappedBody(c, maxBytes));
}

async function concatChunks(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  return Buffer.concat(chunks, size);
}

/**
 * The request body as raw bytes, capped at `maxBytes`: straight from Node's
 * request when the agent runs on Node's server (http/node-server.ts), chunk by chunk as they
 * arrived (no web-stream copies, and none of the joins of a Node stream's own
 * iterator), else the web body (in-process `app.request()`).
 * @throws {ServiceError} `PAYLOAD_TOO_LARGE` (declared or counted) past the limit.
 */
export async function* cappedBody(c: AppContext, maxBytes: number): AsyncGenerator<Uint8Array> {
  checkDeclaredLength(c, maxBytes);
  const incoming = nodeRequest(c);
  const source: AsyncIterable<Uint8Array> | null =
    incoming && !incoming.readableDidRead ? chunksOf(incoming) : c.req.raw.body;
  if (source) yield* capped(source, maxBytes);
}

async function* capped(source: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge(maxBytes);
    yield chunk;
  }
}

/** The first validation issue, phrased with the field it is about. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'Invalid request';
  const field = issue.path.map(String).join('.');
  const nested =
    'issues' in issue && Array.isArray(issue.issues) ? (issue.issues[0] as { message?: string }) : undefined;
  const message = nested?.message ?? issue.message;
  return field ? `Invalid ${field}: ${message}` : `Invalid request: ${message}`;
}

/**
 * Validates `data` with `schema`.
 * @throws {ServiceError} `INVALID_REQUEST` naming the first bad field.
 */
export function parseWith<S extends z.ZodType>(schema: S, data: unknown): z.output<S> {
  const result = schema.safeParse(data);
  if (!result.success) {
    throw new ServiceError(ErrorCode.INVALID_REQUEST, describeIssue(result.error), {
      details: { issues: result.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
    });
  }
  return result.data;
}

/**
 * Reads and validates a JSON body. An empty body counts as `{}` (the TS SDK
 * sends a JSON content type on bodiless requests).
 * @throws {ServiceError} `INVALID_JSON`, `INVALID_REQUEST` or `PAYLOAD_TOO_LARGE`.
 */
export async function readJson<S extends z.ZodType>(c: AppContext, schema: S, maxBytes: number): Promise<z.output<S>> {
  return parseJsonBody(await readBodyBytes(c, maxBytes), schema);
}

/**
 * Runs what {@link readJson} does with a request read from Node (its chunks, the cap, JSON, the schema) once
 * over `body` in memory, so that the first request with a body does not pay for compiling that path.
 * @throws {ServiceError} like {@link readJson} when `body` does not fit `schema`.
 */
export async function warmUpJsonBody<S extends z.ZodType>(schema: S, body: unknown, maxBytes: number): Promise<void> {
  const stream = Readable.from([Buffer.from(JSON.stringify(body))]);
  parseJsonBody(await concatChunks(capped(chunksOf(stream), maxBytes)), schema);
}

function parseJsonBody<S extends z.ZodType>(bytes: Buffer, schema: S): z.output<S> {
  const text = bytes.toString('utf8').replace(/^\uFEFF/, '');
  let data: unknown = {};
  if (text.trim() !== '') {
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new ServiceError(ErrorCode.INVALID_JSON, `Invalid JSON body: ${(err as Error).message}`);
    }
  }
  return parseWith(schema, data);
}

/**
 * Validates the query string. `+` decodes as a space (form encoding), and a
 * repeated key keeps its first value.
 * @throws {ServiceError} `INVALID_REQUEST` naming the first bad parameter.
 */
export function readQuery<S extends z.ZodType>(c: AppContext, schema: S): z.output<S> {
  const search = new URL(c.req.url).searchParams;
  const query: Record<string, string> = {};
  for (const [k, v] of search) if (!(k in query)) query[k] = v;
  return parseWith(schema, query);
}
