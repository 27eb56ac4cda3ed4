import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

/** The Node answer under a web body of {@link streamingFetch}, and who has read it so far. */
interface NodeBody {
  readonly res: IncomingMessage;
  /** Whether the web body has started reading it. */
  web: boolean;
  /** Whether {@link takeNodeBody} handed it on. */
  taken: boolean;
}

const nodeBodies = new WeakMap<Response, NodeBody>();

/**
 * The Node stream under an answer of {@link streamingFetch}, when its web body
 * has not been read: piping it on costs less than going through the web
 * stream. Taking it leaves the web body empty.
 */
export function takeNodeBody(response: Response): IncomingMessage | undefined {
  const body = nodeBodies.get(response);
  if (body === undefined || body.web || body.taken) return undefined;
  body.taken = true;
  return body.res;
}

/**
 * A web stream over a Node answer that starts reading it only when it is read
 * itself (a `highWaterMark` of 0 asks for nothing ahead), so that
 * {@link takeNodeBody} can still hand the Node stream on untouched.
 */
function lazyWebBody(body: NodeBody): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (reader === undefined) {
          if (body.taken) {
            controller.close();
            return;
          }
          body.web = true;
          reader = (Readable.toWeb(body.res) as unknown as ReadableStream<Uint8Array>).getReader();
        }
        const next = await reader.read();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      cancel(reason) {
        if (!body.taken) body.res.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A `fetch` for requests with a streamed body, over `node:http`. Node 20's
 * built-in fetch keeps every chunk of a streamed request body in memory until
 * the request is collected, so a large upload would cost its own size in RSS;
 * this sends the body with the socket's backpressure and keeps nothing.
 */
export function streamingFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((v, k) => {
    headers[k] = v;
  });
  return new Promise<Response>((resolve, reject) => {
    const signal = init.signal ?? undefined;
    const req = request(url, { method: init.method ?? 'GET', headers }, (res: IncomingMessage) => {
      const out = new Headers();
      for (let i = 0; i < res.rawHeaders.length; i += 2)
        out.append(res.rawHeaders[i] ?? '', res.rawHeaders[i + 1] ?? '');
      const status = res.statusCode ?? 502;
      if (status === 204 || status === 304) {
        res.resume();
        resolve(new Response(null, { status, headers: out }));
        return;
      }
      const body: NodeBody = { res, web: false, taken: false };
      const response = new Response(lazyWebBody(body), { status, headers: out });
      nodeBodies.set(response, body);
      resolve(response);
    });
    const onAbort = () => req.destroy(new Error('The operation was aborted'));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => reject(err));
    req.on('close', () => signal?.removeEventListener('abort', onAbort));
    const body = init.body;
    if (body === undefined || body === null) {
      req.end();
      return;
    }
    const source =
      typeof body === 'object' && 'getReader' in body
        ? Readable.fromWeb(body as unknown as WebReadableStream<Uint8Array>)
        : Readable.from(body as unknown as AsyncIterable<Uint8Array>, { objectMode: false });
    pipeline(source, req).catch((err: unknown) => req.destroy(err as Error));
  });
}
