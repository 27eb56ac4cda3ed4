import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

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
      const body =
        status === 204 || status === 304 ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
      resolve(new Response(body, { status, headers: out }));
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
