import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamingFetch, takeNodeBody } from './node-fetch.ts';

let server: Server;
let base: string;
const BODY = Buffer.alloc(3 * 1024 * 1024 + 7, 0x62);

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/empty') {
      res.writeHead(204).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
    res.end(BODY);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('streamingFetch answers', () => {
  it('hands on the Node stream under an unread body, leaving the web body empty', async () => {
    const res = await streamingFetch(`${base}/big`);
    expect(res.status).toBe(200);
    const node = takeNodeBody(res);
    expect(node).toBeDefined();
    expect((await drain(node!)).equals(BODY)).toBe(true);
    expect(takeNodeBody(res)).toBeUndefined();
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  it('reads the web body in full when nobody took the Node stream, and then keeps it', async () => {
    const res = await streamingFetch(`${base}/big`);
    expect(Buffer.from(await res.arrayBuffer()).equals(BODY)).toBe(true);
    expect(takeNodeBody(res)).toBeUndefined();
  });

  it('does not read ahead before the web body is read', async () => {
    const res = await streamingFetch(`${base}/big`);
    await new Promise((r) => setTimeout(r, 50));
    const node = takeNodeBody(res);
    // Nothing was consumed from the Node stream while the answer sat unread.
    expect((await drain(node!)).length).toBe(BODY.length);
  });

  it('gives a 204 no body', async () => {
    const res = await streamingFetch(`${base}/empty`);
    expect(res.status).toBe(204);
    expect(res.body).toBeNull();
    expect(takeNodeBody(res)).toBeUndefined();
  });
});
