import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pathExists, type RawTarEntry, rejectionOf, writeTar } from '../../../../tests/e2e/oci-fixture.ts';
import { ImageError } from './oci-errors.ts';
import { applyLayer, ByteBudget, verifiedBlob } from './oci-layers.ts';
import { readTar } from './oci-tar.ts';

let tmp: string;
let root: string;
let outside: string;
let logs: string[];
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'warren-oci-layers-test-'));
  root = join(tmp, 'rootfs');
  outside = join(tmp, 'outside');
  await mkdir(root, { mode: 0o755 });
  await mkdir(outside);
  logs = [];
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function* chunks(data: Buffer, size = 700): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

function apply(entries: RawTarEntry[] | Buffer, options: { gzip?: boolean; maxBytes?: number } = {}) {
  const tar = Buffer.isBuffer(entries) ? entries : writeTar(entries);
  const data = options.gzip ? gzipSync(tar) : tar;
  return applyLayer(root, chunks(data), {
    label: 'sha256:test',
    budget: new ByteBudget(options.maxBytes ?? 1024 ** 3),
    onLog: (line) => logs.push(line),
  });
}

async function errorOf(promise: Promise<unknown>): Promise<ImageError> {
  const err = await rejectionOf(promise);
  expect(err).toBeInstanceOf(ImageError);
  return err as ImageError;
}

describe('readTar', () => {
  it('reads names longer than 100 bytes from pax records and skips unread bodies', async () => {
    const long = `${'d'.repeat(80)}/${'f'.repeat(80)}.txt`;
    const tar = writeTar([
      { path: 'skipped.txt', content: 'x'.repeat(3000) },
      { path: long, content: 'long name' },
      { path: 'link', type: 'symlink', linkPath: `/${'t'.repeat(150)}` },
    ]);
    const seen: Array<[string, string]> = [];
    for await (const entry of readTar(chunks(tar, 333))) {
      if (entry.header.path === 'skipped.txt') continue;
      let body = '';
      for await (const chunk of entry.body) body += chunk.toString();
      seen.push([entry.header.path, body || entry.header.linkPath]);
    }
    expect(seen).toEqual([
      [long, 'long name'],
      ['link', `/${'t'.repeat(150)}`],
    ]);
  });

  it('rejects a corrupted header', async () => {
    const tar = writeTar([{ path: 'a', content: 'a' }]);
    tar[10] = 0x41; // inside the name field: the checksum no longer matches
    const read = async () => {
      for await (const _ of readTar(chunks(tar))) {
        // consume
      }
    };
    await expect(read()).rejects.toThrow(/checksum/);
  });
});

describe('applyLayer', () => {
  it('writes files, directories, symlinks and hard links with their modes and owners, gzip or not', async () => {
    const result = await apply(
      [
        { path: 'bin/', type: 'directory', mode: 0o755 },
        { path: 'bin/tool', content: '#!/bin/sh\n', mode: 0o4755 },
        { path: 'bin/alias', type: 'symlink', linkPath: 'tool' },
        { path: 'bin/hard', type: 'hardlink', linkPath: 'bin/tool' },
        { path: 'home/user/secret', content: 'mine', mode: 0o600, uid: 1000, gid: 1001 },
        { path: 'big-id', content: 'x', uid: 200_000, gid: 7 },
      ],
      { gzip: true },
    );
    expect(result.entries).toBe(6);
    const tool = await stat(join(root, 'bin/tool'));
    expect(tool.mode & 0o7777).toBe(0o4755);
    expect(await readlink(join(root, 'bin/alias'))).toBe('tool');
    const hard = await stat(join(root, 'bin/hard'));
    expect(hard.ino).toBe(tool.ino);
    expect(tool.nlink).toBe(2);
    const secret = await stat(join(root, 'home/user/secret'));
    expect([secret.uid, secret.gid, secret.mode & 0o777]).toEqual([1000, 1001, 0o600]);
    // Ids beyond the sandbox's 65536 mapped ids become nobody.
    expect((await stat(join(root, 'big-id'))).uid).toBe(65_534);
    expect(logs.some((line) => line.includes('ids above 65535'))).toBe(true);
  });

  it('returns the sha256 of the uncompressed tar as diff id', async () => {
    const tar = writeTar([{ path: 'a', content: 'a' }]);
    const result = await apply(tar, { gzip: true });
    expect(result.diffId).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
  });

  it('applies whiteouts to lower layers only', async () => {
    await apply([
      { path: 'etc/keep', content: 'keep' },
      { path: 'etc/gone', content: 'gone' },
      { path: 'var/cache/a/b', content: 'b' },
    ]);
    await apply([
      { path: 'etc/.wh.gone', content: '' },
      { path: 'var/.wh.cache', content: '' },
      { path: 'etc/added', content: 'new' },
    ]);
    expect(await readdir(join(root, 'etc'))).toEqual(['added', 'keep']);
    expect(await readdir(join(root, 'var'))).toEqual([]);
  });

  it('hides a directory’s lower content behind an opaque marker, wherever the marker is in the layer', async () => {
    await apply([
      { path: 'opt/app/old.txt', content: 'old' },
      { path: 'opt/app/sub/old.txt', content: 'old' },
      { path: 'opt/other', content: 'other' },
    ]);
    await apply([
      { path: 'opt/app/', type: 'directory' },
      { path: 'opt/app/sub/', type: 'directory' },
      { path: 'opt/app/sub/new.txt', content: 'new' },
      { path: 'opt/app/.wh..wh..opq', content: '' },
    ]);
    expect(await readdir(join(root, 'opt/app'))).toEqual(['sub']);
    expect(await readdir(join(root, 'opt/app/sub'))).toEqual(['new.txt']);
    expect(await readFile(join(root, 'opt/other'), 'utf8')).toBe('other');
  });

  it('replaces a directory by a file and a file by a directory', async () => {
    await apply([
      { path: 'x/inner', content: '1' },
      { path: 'y', content: 'file' },
    ]);
    await apply([
      { path: 'x', content: 'now a file' },
      { path: 'y/', type: 'directory' },
    ]);
    expect(await readFile(join(root, 'x'), 'utf8')).toBe('now a file');
    expect((await stat(join(root, 'y'))).isDirectory()).toBe(true);
  });

  it('refuses entries with .. or an absolute path', async () => {
    for (const path of ['../escape.txt', 'a/../../escape.txt', '/etc/escape.txt']) {
      const err = await errorOf(apply([{ path, content: 'pwned' }]));
      expect(err.code).toBe('PATH_ESCAPE');
    }
    expect(await readdir(tmp)).toEqual(['outside', 'rootfs']);
  });

  it('refuses a hard link to a path outside the image', async () => {
    await writeFile(join(outside, 'secret'), 'host secret');
    const err = await errorOf(apply([{ path: 'leak', type: 'hardlink', linkPath: '../outside/secret' }]));
    expect(err.code).toBe('PATH_ESCAPE');
    const abs = await errorOf(apply([{ path: 'leak', type: 'hardlink', linkPath: join(outside, 'secret') }]));
    expect(abs.code).toBe('PATH_ESCAPE');
    expect(await pathExists(join(root, 'leak'))).toBe(false);
  });

  it('resolves symlinks in parent paths inside the root, never on the host', async () => {
    // An absolute symlink and a relative one climbing above the root: as in a chroot, both stay inside.
    await apply([
      { path: 'evil-abs', type: 'symlink', linkPath: outside },
      { path: 'evil-rel', type: 'symlink', linkPath: '../../../../outside' },
    ]);
    await apply([
      { path: 'evil-abs/planted', content: 'through absolute link' },
      { path: 'evil-rel/planted', content: 'through relative link' },
    ]);
    expect(await readdir(outside)).toEqual([]);
    // `outside` (an absolute host path) resolved inside the root; `../../../../outside` clamps at the root.
    expect(await readFile(join(root, outside, 'planted'), 'utf8')).toBe('through absolute link');
    expect(await readFile(join(root, 'outside/planted'), 'utf8')).toBe('through relative link');
  });

  it('replaces a symlink at the entry itself instead of writing through it', async () => {
    await writeFile(join(outside, 'target'), 'host file');
    await symlink(join(outside, 'target'), join(root, 'link'));
    await apply([{ path: 'link', content: 'image file' }]);
    expect(await readFile(join(outside, 'target'), 'utf8')).toBe('host file');
    expect((await lstat(join(root, 'link'))).isFile()).toBe(true);
  });

  it('a hard link through a symlinked parent links the file inside the root', async () => {
    await writeFile(join(outside, 'secret'), 'host secret');
    await apply([
      { path: 'jump', type: 'symlink', linkPath: outside },
      { path: join(outside.slice(1), 'secret'), content: 'image copy' },
    ]);
    await apply([{ path: 'copy', type: 'hardlink', linkPath: 'jump/secret' }]);
    expect(await readFile(join(root, 'copy'), 'utf8')).toBe('image copy');
  });

  it('does not delete through a whiteout naming .. or a symlinked parent', async () => {
    await writeFile(join(outside, 'keep'), 'host');
    const err = await errorOf(apply([{ path: 'a/.wh...', content: '' }]));
    expect(err.code).toBe('PATH_ESCAPE');
    await apply([{ path: 'jump', type: 'symlink', linkPath: outside }]);
    await apply([{ path: 'jump/.wh.keep', content: '' }]);
    expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('host');
  });

  it('names the entry when the filesystem refuses it', async () => {
    const err = await errorOf(apply([{ path: `${'n'.repeat(300)}/file`, content: 'x' }]));
    expect(err.code).toBe('INVALID_IMAGE');
    expect(err.message).toContain('ENAMETOOLONG');
    const notDir = await errorOf(
      apply([
        { path: 'plain', content: 'x' },
        { path: 'plain/child', content: 'y' },
      ]),
    );
    expect(notDir.code).toBe('INVALID_IMAGE');
    expect(notDir.message).toContain('plain is not a directory');
  });

  it('skips device nodes and fifos with a log line', async () => {
    await apply([
      { path: 'dev/null', type: 'char' },
      { path: 'run/pipe', type: 'fifo' },
      { path: 'ok', content: 'ok' },
    ]);
    expect(await pathExists(join(root, 'dev/null'))).toBe(false);
    expect(await pathExists(join(root, 'run/pipe'))).toBe(false);
    expect(logs.filter((line) => line.includes('skipping'))).toHaveLength(2);
    expect(await readFile(join(root, 'ok'), 'utf8')).toBe('ok');
  });

  it('refuses zstd layers with a clear error', async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64)]);
    const err = await errorOf(apply(zstd));
    expect(err.code).toBe('UNSUPPORTED');
    expect(err.message).toMatch(/zstd/);
  });

  it('stops at maxBytes of uncompressed data', async () => {
    const err = await errorOf(
      apply([{ path: 'big', content: Buffer.alloc(64 * 1024) }], { gzip: true, maxBytes: 16 * 1024 }),
    );
    expect(err.code).toBe('TOO_LARGE');
  });

  it('reports a truncated or garbled layer as an invalid image, wherever it breaks', async () => {
    const tar = writeTar([
      { path: 'dir/', type: 'directory' },
      { path: 'dir/file', content: 'x'.repeat(1500) },
      { path: `long/${'p'.repeat(120)}`, content: 'long' },
    ]);
    // Cuts inside headers (100, 700, 2600), file data (1200, 2100) and a pax record (3100).
    for (const cut of [100, 700, 1200, 2100, 2600, 3100]) {
      await rm(root, { recursive: true, force: true });
      await mkdir(root);
      const err = await errorOf(apply(tar.subarray(0, cut)));
      expect(err.code, `cut at ${cut}`).toBe('INVALID_IMAGE');
    }
    const garbage = Buffer.alloc(4096, 0x41);
    expect((await errorOf(apply(garbage))).code).toBe('INVALID_IMAGE');
  });

  it('reports corrupt gzip as an invalid image', async () => {
    const data = gzipSync(writeTar([{ path: 'a', content: 'a'.repeat(5000) }]));
    data[data.length - 30]! ^= 0xff;
    const err = await errorOf(apply(data));
    expect(err.code).toBe('INVALID_IMAGE');
  });
});

describe('verifiedBlob', () => {
  const data = Buffer.from('layer bytes');
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const drain = async (source: AsyncIterable<Buffer>) => {
    for await (const _ of source) {
      // consume
    }
  };

  it('passes data that matches its digest and size', async () => {
    await drain(verifiedBlob(chunks(data, 3), { digest, size: data.length }, 'blob'));
  });

  it('fails on another digest, a shorter or a longer blob', async () => {
    const other = Buffer.from('layer bytez');
    expect((await errorOf(drain(verifiedBlob(chunks(other), { digest, size: data.length }, 'blob')))).code).toBe(
      'DIGEST_MISMATCH',
    );
    expect((await errorOf(drain(verifiedBlob(chunks(data), { digest, size: data.length + 1 }, 'blob')))).code).toBe(
      'DIGEST_MISMATCH',
    );
    expect((await errorOf(drain(verifiedBlob(chunks(data), { digest, size: 4 }, 'blob')))).code).toBe(
      'DIGEST_MISMATCH',
    );
  });
});
