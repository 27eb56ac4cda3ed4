import { readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FileEntry, fileListResponseSchema } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
let ws: string;

beforeAll(async () => {
  agent = await createTestAgent();
  ws = agent.workspace;
  await symlink(agent.outside, join(ws, 'abs-link')); // absolute symlink out of the root
  await symlink('../outside', join(ws, 'rel-link')); // relative symlink out of the root
  await symlink(join(agent.outside, 'secret.txt'), join(ws, 'secret-link')); // final-component symlink
  await symlink(join(agent.outside, 'planted.txt'), join(ws, 'dangling-link')); // dangling, points out
});
afterAll(() => agent.cleanup());

const q = (path: string) => `?${new URLSearchParams({ path })}`;

async function body(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

function multipart(parts: Array<{ name: string; filename?: string; data: string | Buffer }>): {
  body: Buffer;
  contentType: string;
} {
  const boundary = `----warren${Math.random().toString(16).slice(2)}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename ? `; filename="${part.filename}"` : ''}`;
    const type = part.filename ? 'Content-Type: application/octet-stream\r\n' : '';
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`));
    chunks.push(Buffer.isBuffer(part.data) ? part.data : Buffer.from(part.data));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

const upload = (parts: Parameters<typeof multipart>[0]) => {
  const m = multipart(parts);
  return agent.request('/files/upload', { method: 'POST', headers: { 'content-type': m.contentType }, body: m.body });
};

describe('files: write / read / download', () => {
  it('writes text, creating parents, and reads it back', async () => {
    const path = join(ws, 'deep', 'er', 'a.txt');
    const res = await agent.json('POST', '/files/write', { path, content: 'héllo\n' });
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ success: true, path, size: 7 });
    const read = await agent.request(`/files/read${q(path)}`);
    expect(read.status).toBe(200);
    expect(await body(read)).toEqual({ content: 'héllo\n', path, size: 7 });
  });

  it('round-trips every byte value through base64 write and download', async () => {
    const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
    const path = join(ws, 'bin', 'all.bin');
    const res = await agent.json('POST', '/files/write', {
      path,
      content: bytes.toString('base64'),
      encoding: 'base64',
      overwrite: true,
      mode: '0600',
    });
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ size: 512 });
    expect((await readFile(path)).equals(bytes)).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const dl = await agent.request(`/files/download${q(path)}`);
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-type')).toBe('application/octet-stream');
    expect(dl.headers.get('content-length')).toBe('512');
    expect(dl.headers.get('x-request-id')).toMatch(/\S/);
    expect(Buffer.from(await dl.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('applies mode on overwrite too', async () => {
    const path = join(ws, 'script.sh');
    await agent.json('POST', '/files/write', { path, content: '#!/bin/sh\n', mode: '0644' });
    await agent.json('POST', '/files/write', { path, content: '#!/bin/sh\necho\n', mode: '0755' });
    expect((await stat(path)).mode & 0o777).toBe(0o755);
  });

  it('refuses to overwrite when overwrite is false, and overwrites by default', async () => {
    const path = join(ws, 'once.txt');
    expect((await agent.json('POST', '/files/write', { path, content: 'one' })).status).toBe(200);
    const again = await agent.json('POST', '/files/write', { path, content: 'two', overwrite: false });
    expect(again.status).toBe(409);
    expect(await body(again)).toMatchObject({ code: 'FILE_ALREADY_EXISTS', path });
    expect(await readFile(path, 'utf8')).toBe('one');
    expect((await agent.json('POST', '/files/write', { path, content: 'three' })).status).toBe(200);
    expect(await readFile(path, 'utf8')).toBe('three');
  });

  it('rejects invalid base64 and invalid modes', async () => {
    const path = join(ws, 'bad.bin');
    const b64 = await agent.json('POST', '/files/write', { path, content: 'not base64!!', encoding: 'base64' });
    expect(b64.status).toBe(400);
    expect(await body(b64)).toMatchObject({ code: 'INVALID_REQUEST' });
    const mode = await agent.json('POST', '/files/write', { path, content: 'x', mode: 'rwx' });
    expect(mode.status).toBe(400);
    expect(String((await body(mode)).error)).toContain('mode');
  });

  it('answers 404 FILE_NOT_FOUND with the path for missing files', async () => {
    const path = join(ws, 'missing.txt');
    for (const route of ['/files/read', '/files/download']) {
      const res = await agent.request(`${route}${q(path)}`);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await body(res)).toMatchObject({ code: 'FILE_NOT_FOUND', path, message: `File not found: ${path}` });
    }
  });

  it('decodes + in query strings as a space', async () => {
    const path = join(ws, 'a b.txt');
    await agent.json('POST', '/files/write', { path, content: 'spaced' });
    const encoded = `?path=${encodeURIComponent(path).replace(/%20/g, '+')}`;
    expect(encoded).toContain('+');
    expect(await body(await agent.request(`/files/exists${encoded}`))).toMatchObject({ exists: true, path });
    expect(await body(await agent.request(`/files/read${encoded}`))).toMatchObject({ content: 'spaced' });
  });

  it('requires the path parameter', async () => {
    const res = await agent.request('/files/read');
    expect(res.status).toBe(400);
    expect(await body(res)).toMatchObject({ code: 'INVALID_REQUEST' });
  });
});

describe('files: list / exists / remove / mkdir', () => {
  it('lists a directory with both field spellings', async () => {
    const dir = join(ws, 'listing');
    await agent.json('POST', '/files/write', { path: join(dir, 'f.txt'), content: '12345', mode: '0640' });
    await agent.json('POST', '/files/mkdir', { path: join(dir, 'sub') });
    const res = await agent.request(`/files/list${q(dir)}`);
    expect(res.status).toBe(200);
    const list = fileListResponseSchema.parse(await res.json());
    expect(list.path).toBe(dir);
    expect(list.count).toBe(2);
    const byName = Object.fromEntries(list.files.map((f) => [f.name, f])) as Record<string, FileEntry>;
    expect(byName['f.txt']).toMatchObject({
      path: join(dir, 'f.txt'),
      size: 5,
      is_dir: false,
      is_directory: false,
      permissions: '-rw-r-----',
      mode: '0640',
    });
    expect(byName['f.txt']?.modified).toMatch(/Z$/);
    expect(byName['f.txt']?.modified_time).toBe(byName['f.txt']?.modified);
    expect(byName.sub).toMatchObject({ is_dir: true, is_directory: true });
    expect(byName.sub?.permissions.startsWith('d')).toBe(true);
  });

  it('lists the workdir by default and 404s a missing directory', async () => {
    const res = await agent.request('/files/list');
    expect(await body(res)).toMatchObject({ path: ws });
    const missing = await agent.request(`/files/list${q(join(ws, 'nope'))}`);
    expect(missing.status).toBe(404);
    expect(await body(missing)).toMatchObject({ code: 'DIRECTORY_NOT_FOUND', path: join(ws, 'nope') });
  });

  it('reports existence', async () => {
    expect(await body(await agent.request(`/files/exists${q(join(ws, 'once.txt'))}`))).toMatchObject({ exists: true });
    expect(await body(await agent.request(`/files/exists${q(join(ws, 'zzz'))}`))).toMatchObject({ exists: false });
  });

  it('removes recursively and 404s a missing path', async () => {
    const dir = join(ws, 'tree');
    await agent.json('POST', '/files/write', { path: join(dir, 'a', 'b', 'c.txt'), content: 'x' });
    const res = await agent.request(`/files/remove${q(dir)}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ success: true, path: dir });
    await expect(stat(dir)).rejects.toThrow();
    const again = await agent.request(`/files/remove${q(dir)}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(await body(again)).toMatchObject({ code: 'FILE_NOT_FOUND', path: dir });
  });

  it('refuses to remove an allowed root', async () => {
    const res = await agent.request(`/files/remove${q(ws)}`, { method: 'DELETE' });
    expect(res.status).toBe(403);
    expect((await stat(ws)).isDirectory()).toBe(true);
  });

  it('mkdir acts like mkdir -p and is idempotent', async () => {
    const dir = join(ws, 'm', 'n', 'o');
    for (let i = 0; i < 2; i++) {
      const res = await agent.json('POST', '/files/mkdir', { path: dir });
      expect(res.status).toBe(200);
      expect(await body(res)).toMatchObject({ success: true, path: dir });
    }
    expect((await stat(dir)).isDirectory()).toBe(true);
  });
});

describe('files: upload', () => {
  it('accepts the file part first (TS SDK order)', async () => {
    const form = new FormData();
    form.append('file', new Blob([Buffer.from([0, 1, 2, 255])]), 'up.bin');
    form.append('path', join(ws, 'up', 'ts.bin'));
    const res = await agent.request('/files/upload', { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ success: true, path: join(ws, 'up', 'ts.bin'), size: 4 });
    expect((await readFile(join(ws, 'up', 'ts.bin'))).equals(Buffer.from([0, 1, 2, 255]))).toBe(true);
  });

  it('accepts the path part first (Python SDK order)', async () => {
    const data = Buffer.from('line one\r\n--not a boundary\r\n\u00ff');
    const res = await upload([
      { name: 'path', data: join(ws, 'up', 'py.txt') },
      { name: 'file', filename: 'py.txt', data },
    ]);
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ path: join(ws, 'up', 'py.txt'), size: data.length });
    expect((await readFile(join(ws, 'up', 'py.txt'))).equals(data)).toBe(true);
  });

  it('puts the file inside when the path is a directory', async () => {
    const res = await upload([
      { name: 'path', data: `${ws}/` },
      { name: 'file', filename: 'named.txt', data: 'n' },
    ]);
    expect(await body(res)).toMatchObject({ path: join(ws, 'named.txt') });
    expect(await readFile(join(ws, 'named.txt'), 'utf8')).toBe('n');
  });

  it('requires both parts and a multipart body', async () => {
    const noFile = await upload([{ name: 'path', data: join(ws, 'x') }]);
    expect(noFile.status).toBe(400);
    const noPath = await upload([{ name: 'file', filename: 'x', data: 'x' }]);
    expect(noPath.status).toBe(400);
    expect(String((await body(noPath)).error)).toContain('path');
    const json = await agent.json('POST', '/files/upload', { path: join(ws, 'x') });
    expect(json.status).toBe(400);
  });
});

describe('files: path safety', () => {
  const escapes = () => ({
    dotdot: join(ws, '..', 'outside', 'secret.txt'),
    absLink: join(ws, 'abs-link', 'secret.txt'),
    relLink: join(ws, 'rel-link', 'secret.txt'),
  });
  const dirEscapes = () => ({
    dotdot: `${ws}/../outside`,
    absLink: join(ws, 'abs-link'),
    relLink: join(ws, 'rel-link'),
  });

  async function expectDenied(res: Response, path: string): Promise<void> {
    expect(res.status).toBe(403);
    expect(await body(res)).toMatchObject({ code: 'PATH_NOT_ALLOWED', path });
  }

  it.each(['read', 'download', 'exists'])(
    'GET /files/%s rejects .., absolute and relative symlink escapes',
    async (r) => {
      for (const path of Object.values(escapes()))
        await expectDenied(await agent.request(`/files/${r}${q(path)}`), path);
    },
  );

  it('read and download reject a final-component symlink pointing outside', async () => {
    const path = join(ws, 'secret-link');
    await expectDenied(await agent.request(`/files/read${q(path)}`), path);
    await expectDenied(await agent.request(`/files/download${q(path)}`), path);
  });

  it('GET /files/list rejects escapes', async () => {
    for (const path of Object.values(dirEscapes()))
      await expectDenied(await agent.request(`/files/list${q(path)}`), path);
  });

  it('DELETE /files/remove rejects escapes and leaves the target alone', async () => {
    for (const path of [...Object.values(escapes()), ...Object.values(dirEscapes())]) {
      await expectDenied(await agent.request(`/files/remove${q(path)}`, { method: 'DELETE' }), path);
    }
    expect(await readFile(join(agent.outside, 'secret.txt'), 'utf8')).toBe('top secret\n');
  });

  it('POST /files/write rejects escapes, through symlinked directories and final-component symlinks', async () => {
    const paths = [
      join(ws, '..', 'outside', 'planted.txt'),
      join(ws, 'abs-link', 'planted.txt'),
      join(ws, 'rel-link', 'planted.txt'),
      join(ws, 'abs-link', 'new-dir', 'planted.txt'),
      join(ws, 'rel-link', 'new-dir', 'planted.txt'),
      join(ws, 'secret-link'),
      join(ws, 'dangling-link'),
    ];
    for (const path of paths) {
      await expectDenied(await agent.json('POST', '/files/write', { path, content: 'pwned' }), path);
    }
  });

  it('POST /files/mkdir rejects escapes', async () => {
    for (const path of [join(ws, '..', 'outside', 'd'), join(ws, 'abs-link', 'd'), join(ws, 'rel-link', 'd', 'e')]) {
      await expectDenied(await agent.json('POST', '/files/mkdir', { path }), path);
    }
  });

  it('POST /files/upload rejects escapes in the path part', async () => {
    for (const path of [join(ws, '..', 'outside', 'up'), join(ws, 'abs-link', 'up'), join(ws, 'rel-link', 'up')]) {
      await expectDenied(
        await upload([
          { name: 'path', data: path },
          { name: 'file', filename: 'up', data: 'x' },
        ]),
        path,
      );
    }
  });

  it('rejects relative paths and paths outside every root', async () => {
    await expectDenied(await agent.request(`/files/read${q('workspace/a.txt')}`), 'workspace/a.txt');
    await expectDenied(await agent.request(`/files/read${q('/etc/passwd')}`), '/etc/passwd');
  });

  it('left the outside directory untouched', async () => {
    expect((await readdir(agent.outside)).sort()).toEqual(['secret.txt']);
    expect(await readFile(join(agent.outside, 'secret.txt'), 'utf8')).toBe('top secret\n');
  });

  it('allows symlinks that stay inside the roots', async () => {
    await writeFile(join(agent.scratch, 'shared.txt'), 'shared');
    await symlink(agent.scratch, join(ws, 'to-scratch'));
    const res = await agent.request(`/files/read${q(join(ws, 'to-scratch', 'shared.txt'))}`);
    expect(res.status).toBe(200);
    expect(await body(res)).toMatchObject({ content: 'shared' });
  });
});
