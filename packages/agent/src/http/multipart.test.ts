import { randomBytes } from 'node:crypto';
import { ServiceError } from '@warren/protocol';
import { describe, expect, it } from 'vitest';
import { multipartBoundary, readMultipart } from './multipart.ts';

const boundary = '----warrenTestBoundary7MA4YWxk';

function body(parts: Array<{ name: string; filename?: string; data: Buffer | string }>, epilogue = ''): Buffer {
  const chunks: Buffer[] = [Buffer.from('preamble to ignore\r\n')];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n\r\n`));
    chunks.push(Buffer.from(p.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n${epilogue}`));
  return Buffer.concat(chunks);
}

/** A stream delivering `bytes` in chunks of `size`. */
function stream(bytes: Buffer, size: number): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(controller) {
      if (off >= bytes.length) return controller.close();
      controller.enqueue(new Uint8Array(bytes.subarray(off, off + size)));
      off += size;
    },
  });
}

async function parse(bytes: Buffer, chunkSize: number) {
  const parts: Array<{ name: string; filename: string | undefined; data: Buffer }> = [];
  await readMultipart(stream(bytes, chunkSize), boundary, (info) => {
    const chunks: Buffer[] = [];
    return {
      write: async (c) => {
        chunks.push(Buffer.from(c));
      },
      end: async () => {
        parts.push({ ...info, data: Buffer.concat(chunks) });
      },
    };
  });
  return parts;
}

describe('readMultipart', () => {
  const file = Buffer.concat([randomBytes(300_000), Buffer.from(`\r\n--${boundary.slice(0, -1)}x\r\n--`)]);
  const input = body([
    { name: 'file', filename: 'a.bin', data: file },
    { name: 'path', data: '/workspace/a.bin' },
  ]);

  it.each([1, 7, 64, 65_536, input.length])('parses parts identically with %i-byte chunks', async (size) => {
    const parts = await parse(input, size);
    expect(parts.map((p) => [p.name, p.filename])).toEqual([
      ['file', 'a.bin'],
      ['path', undefined],
    ]);
    expect(parts[0]!.data.equals(file)).toBe(true);
    expect(parts[1]!.data.toString()).toBe('/workspace/a.bin');
  });

  it('finds a delimiter split at every offset across two chunks', async () => {
    const data = randomBytes(200);
    const bytes = body([
      { name: 'file', filename: 'f', data },
      { name: 'path', data: '/p' },
    ]);
    const delimiterAt = bytes.indexOf(`\r\n--${boundary}`, 100);
    for (let cut = delimiterAt - 2; cut <= delimiterAt + boundary.length + 5; cut++) {
      const chunks = [bytes.subarray(0, cut), bytes.subarray(cut)];
      const parts: Buffer[] = [];
      await readMultipart(
        (async function* () {
          yield* chunks;
        })(),
        boundary,
        () => {
          const got: Buffer[] = [];
          return {
            write: async (c) => {
              got.push(c);
            },
            end: async () => {
              parts.push(Buffer.concat(got));
            },
          };
        },
      );
      expect(parts[0]!.equals(data), `cut at ${cut}`).toBe(true);
      expect(parts[1]!.toString()).toBe('/p');
    }
  });

  it('keeps an empty part and ignores the epilogue', async () => {
    const parts = await parse(body([{ name: 'file', filename: 'e', data: '' }], 'trailing junk'), 3);
    expect(parts).toEqual([{ name: 'file', filename: 'e', data: Buffer.alloc(0) }]);
  });

  it('rejects a body without its closing boundary', async () => {
    const cut = input.subarray(0, input.length - 10);
    await expect(parse(cut, 1000)).rejects.toBeInstanceOf(ServiceError);
    await expect(parse(cut, 1000)).rejects.toThrow(/closing boundary/);
  });

  it('rejects a part without a name', async () => {
    const bad = Buffer.from(`--${boundary}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${boundary}--\r\n`);
    await expect(parse(bad, 5)).rejects.toThrow(/Content-Disposition/);
  });

  it('reads the boundary from a Content-Type, quoted or not', () => {
    expect(multipartBoundary(`multipart/form-data; boundary=${boundary}`)).toBe(boundary);
    expect(multipartBoundary('multipart/form-data; boundary="a b"; charset=utf-8')).toBe('a b');
    expect(() => multipartBoundary('multipart/form-data')).toThrow(ServiceError);
  });
});
