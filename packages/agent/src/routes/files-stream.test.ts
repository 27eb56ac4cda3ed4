import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, eventually, type TestAgent } from '../test-helpers.ts';

// The files routes over a real Node server, the way the agent runs: downloads and uploads take the
// Node-stream paths there (no web streams), which in-process `app.request()` does not reach.

let agent: TestAgent;
let limited: TestAgent;
let address: string;
let limitedAddress: string;
const UPLOAD_LIMIT = 1024 * 1024;

beforeAll(async () => {
  agent = await createTestAgent();
  limited = await createTestAgent({ WARREN_AGENT_MAX_UPLOAD_BYTES: String(UPLOAD_LIMIT) });
  address = await agent.listen();
  limitedAddress = await limited.listen();
  await symlink(agent.outside, join(agent.workspace, 'abs-link'));
});
afterAll(async () => {
  await agent.cleanup();
  await limited.cleanup();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One HTTP request to a listening agent; `body` chunks are written one by one (chunked without a length). */
function call(
  target: { agent: TestAgent; address: string },
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer[] } = {},
): Promise<Answer> {
  const [host, port] = target.address.split(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: Number(port),
        method,
        path,
        headers: { authorization: `Bearer ${target.agent.token()}`, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    // The agent may answer (413) before the whole body is written; the write side failing then is expected.
    req.on('error', reject);
    for (const chunk of options.body ?? []) req.write(chunk);
    req.end();
  });
}

const q = (path: string) => `?${new URLSearchParams({ path })}`;

/** Descriptors of this process open on `path`. */
function openOn(path: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

function multipart(parts: Array<{ name: string; filename?: string; data: Buffer | string }>) {
  const boundary = `----warrenStream${randomBytes(6).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n\r\n`));
    chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('files over a real server: download', () => {
  it('streams a large file byte for byte, with its headers, and closes it', async () => {
    const data = randomBytes(9 * 1024 * 1024 + 123);
    const path = join(agent.workspace, 'big.bin');
    await writeFile(path, data);
    const res = await call({ agent, address }, 'GET', `/files/download${q(path)}`, {
      headers: { 'x-request-id': 'req_stream_test' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(data.length));
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['content-disposition']).toContain('filename="big.bin"');
    expect(res.headers['x-request-id']).toBe('req_stream_test');
    expect(res.body.equals(data)).toBe(true);
    // Closed once the last write is flushed, which may come just after the client has read the last byte.
    expect(await eventually(() => openOn(path) === 0, 5000)).toBe(true);
  });

  it('sends an empty file as an empty body', async () => {
    const path = join(agent.workspace, 'empty.bin');
    await writeFile(path, '');
    const res = await call({ agent, address }, 'GET', `/files/download${q(path)}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('0');
    expect(res.body.length).toBe(0);
  });

  it('closes the file when the client goes away mid-download', async () => {
    const path = join(agent.workspace, 'abandoned.bin');
    await writeFile(path, randomBytes(32 * 1024 * 1024));
    const [host, port] = address.split(':');
    await new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host,
          port: Number(port),
          path: `/files/download${q(path)}`,
          headers: { authorization: `Bearer ${agent.token()}` },
        },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', () => undefined);
      req.on('close', resolve);
      setTimeout(() => reject(new Error('no data')), 10_000).unref();
      req.end();
    });
    expect(await eventually(() => openOn(path) === 0, 5000)).toBe(true);
  });

  it('still refuses escapes and answers a missing file with the error envelope', async () => {
    await writeFile(join(agent.outside, 'secret.txt'), 'top secret\n');
    for (const path of [
      join(agent.workspace, '..', 'outside', 'secret.txt'),
      join(agent.workspace, 'abs-link', 'secret.txt'),
    ]) {
      const res = await call({ agent, address }, 'GET', `/files/download${q(path)}`);
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body.toString())).toMatchObject({ code: 'PATH_NOT_ALLOWED', path });
    }
    const missing = join(agent.workspace, 'missing.bin');
    const res = await call({ agent, address }, 'GET', `/files/download${q(missing)}`);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: 'FILE_NOT_FOUND', path: missing });
  });
});

describe('files over a real server: upload', () => {
  it('stores a large streamed file byte for byte, file part first (TS SDK order)', async () => {
    // Content that looks like a boundary start, at the end of the file too.
    const data = Buffer.concat([randomBytes(9 * 1024 * 1024 + 77), Buffer.from('\r\n------warrenStream\r\n--')]);
    const target = join(agent.workspace, 'up', 'big.bin');
    const m = multipart([
      { name: 'file', filename: 'big.bin', data },
      { name: 'path', data: target },
    ]);
    // Sent in uneven pieces, so part boundaries fall across chunks.
    const pieces: Buffer[] = [];
    for (let off = 0; off < m.body.length; off += 65_521) pieces.push(m.body.subarray(off, off + 65_521));
    const res = await call({ agent, address }, 'POST', '/files/upload', {
      headers: { 'content-type': m.contentType },
      body: pieces,
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toMatchObject({ success: true, path: target, size: data.length });
    expect((await readFile(target)).equals(data)).toBe(true);
    expect(openOn(target)).toBe(0);
  });

  it('refuses an upload past the size limit while it streams, storing nothing', async () => {
    const target = join(limited.workspace, 'too-big.bin');
    const m = multipart([
      { name: 'path', data: target },
      { name: 'file', filename: 'too-big.bin', data: randomBytes(UPLOAD_LIMIT * 2) },
    ]);
    const pieces: Buffer[] = [];
    for (let off = 0; off < m.body.length; off += 64 * 1024) pieces.push(m.body.subarray(off, off + 64 * 1024));
    // No Content-Length: the limit is found by counting, not declared up front.
    const res = await call({ agent: limited, address: limitedAddress }, 'POST', '/files/upload', {
      headers: { 'content-type': m.contentType },
      body: pieces,
    });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses an escaping path after the file part arrived, storing nothing outside', async () => {
    const path = join(agent.workspace, 'abs-link', 'planted.bin');
    const m = multipart([
      { name: 'file', filename: 'planted.bin', data: randomBytes(2 * 1024 * 1024) },
      { name: 'path', data: path },
    ]);
    const res = await call({ agent, address }, 'POST', '/files/upload', {
      headers: { 'content-type': m.contentType },
      body: [m.body],
    });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: 'PATH_NOT_ALLOWED', path });
    await expect(stat(join(agent.outside, 'planted.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
