import { describe, expect, it } from 'vitest';
import { multipart } from './multipart.ts';

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

describe('multipart', () => {
  it('sends the path and file parts, and states the exact length when the size is known', async () => {
    const m = multipart('/workspace/dir/a "b".txt', chunks('hello ', 'world'), 11);
    const boundary = /boundary=(.+)$/.exec(m.type)?.[1];
    expect(m.type.startsWith('multipart/form-data; boundary=warren-')).toBe(true);
    const body = (await collect(m.body)).toString();
    expect(m.length).toBe(Buffer.byteLength(body));
    expect(body).toBe(
      `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/workspace/dir/a "b".txt\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a _b_.txt"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\nhello world\r\n' +
        `--${boundary}--\r\n`,
    );
  });

  it('leaves the length unknown without a size', async () => {
    const m = multipart('/workspace/x', chunks('abc'));
    expect(m.length).toBeUndefined();
    expect((await collect(m.body)).includes('abc')).toBe(true);
  });

  it('fails instead of sending more or fewer bytes than the size it announced', async () => {
    await expect(collect(multipart('/workspace/x', chunks('abc', 'def'), 4).body)).rejects.toThrow(
      /changed while it was sent \(4 bytes expected, 6 read\)/,
    );
    await expect(collect(multipart('/workspace/x', chunks('ab'), 4).body)).rejects.toThrow(/4 bytes expected, 2 read/);
  });
});
