import { mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { c as createTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyStepError, copyIntoLayer, mapEntry, safeEntryPath } from './copy-layer.ts';

describe('safeEntryPath', () => {
  it('normalizes relative paths and refuses absolute ones and .. components', () => {
    expect(safeEntryPath('./app//main.py')).toBe('app/main.py');
    expect(safeEntryPath('app/')).toBe('app');
    expect(safeEntryPath('/etc/passwd')).toBeUndefined();
    expect(safeEntryPath('app/../../x')).toBeUndefined();
    expect(safeEntryPath('..')).toBeUndefined();
  });
});

describe('mapEntry (Dockerfile COPY semantics)', () => {
  it('copies a directory source’s contents into the destination', () => {
    const dirs = (p: string) => p === 'app';
    expect(mapEntry('app', ['app/'], '/app', true, dirs)).toBe('/app');
    expect(mapEntry('app/main.py', ['app/'], '/app', true, dirs)).toBe('/app/main.py');
    expect(mapEntry('app/main.py', ['app/'], '/app', true)).toBe('/app/main.py');
    expect(mapEntry('other/x', ['app/'], '/app', true)).toBeUndefined();
  });
  it('puts a file source at the destination, or inside it when it is a directory', () => {
    expect(mapEntry('req.txt', ['req.txt'], '/srv/r.txt', false)).toBe('/srv/r.txt');
    expect(mapEntry('req.txt', ['req.txt'], '/srv', true)).toBe('/srv/req.txt');
  });
  it('handles the whole context and simple globs', () => {
    expect(mapEntry('a/b.txt', ['.'], '/w', true)).toBe('/w/a/b.txt');
    expect(mapEntry('x.py', ['*.py'], '/w', true)).toBe('/w/x.py');
    expect(mapEntry('x.txt', ['*.py'], '/w', true)).toBeUndefined();
  });
});

describe('copyIntoLayer', () => {
  let dir: string;
  let lower: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-copy-'));
    lower = join(dir, 'lower');
    // An image whose /bin is a symlink to usr/bin (merged /usr).
    await mkdir(join(lower, 'usr/bin'), { recursive: true });
    await symlink('usr/bin', join(lower, 'bin'));
    await mkdir(join(lower, 'etc'));
    await writeFile(join(lower, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
    await writeFile(join(lower, 'etc/group'), 'root:x:0:\napp:x:1001:\n');
    const ctx = join(dir, 'ctx');
    await mkdir(join(ctx, 'app/sub'), { recursive: true });
    await writeFile(join(ctx, 'app/main.py'), 'print(1)\n');
    await writeFile(join(ctx, 'app/sub/data.txt'), 'data\n');
    await symlink('main.py', join(ctx, 'app/link.py'));
    await writeFile(join(ctx, 'tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
    await createTar({ gzip: true, file: join(dir, 'ctx.tar.gz'), cwd: ctx, portable: true }, ['app', 'tool']);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const base = (layerDir: string) => ({
    tarball: join(dir, 'ctx.tar.gz'),
    layerDir,
    lower: [lower],
    owner: { uid: 0, gid: 0 },
    permissions: null,
    idShift: 100_000,
    maxBytes: 1024 * 1024,
  });

  it('copies a directory with files, a symlink and shifted ownership', async () => {
    const layer = join(dir, 'l1');
    await mkdir(layer);
    const r = await copyIntoLayer({ ...base(layer), sources: ['app/'], dest: '/srv/app/' });
    // The source directory's own entry is the destination, not a directory inside it (Dockerfile semantics).
    await expect(stat(join(layer, 'srv/app/app'))).rejects.toThrow();
    expect(r.entries).toBeGreaterThanOrEqual(4);
    expect(await readFile(join(layer, 'srv/app/main.py'), 'utf8')).toBe('print(1)\n');
    expect(await readFile(join(layer, 'srv/app/sub/data.txt'), 'utf8')).toBe('data\n');
    expect(await readlink(join(layer, 'srv/app/link.py'))).toBe('main.py');
    const st = await stat(join(layer, 'srv/app/main.py'));
    expect([st.uid, st.gid]).toEqual([100_000, 100_000]);
  });

  it('follows the image’s symlinks for the destination and applies owner and mode', async () => {
    const layer = join(dir, 'l2');
    await mkdir(layer);
    await copyIntoLayer({
      ...base(layer),
      sources: ['tool'],
      dest: '/bin/',
      owner: { uid: 1000, gid: 1001 },
      permissions: 0o750,
    });
    const st = await stat(join(layer, 'usr/bin/tool'));
    expect(st.mode & 0o7777).toBe(0o750);
    expect([st.uid, st.gid]).toEqual([101_000, 101_001]);
    await expect(stat(join(layer, 'bin'))).rejects.toThrow();
  });

  it('rejects an entry that goes through a symlink of the same upload', async () => {
    const evil = join(dir, 'evil.tar');
    const ctx = join(dir, 'evilctx');
    await mkdir(join(ctx, 'app'), { recursive: true });
    await symlink('/etc', join(ctx, 'app/etc'));
    await createTar({ file: evil, cwd: ctx, portable: true }, ['app']);
    // Append a file "under" the symlink by building a second archive with a real directory of that name.
    const ctx2 = join(dir, 'evilctx2');
    await mkdir(join(ctx2, 'app/etc'), { recursive: true });
    await writeFile(join(ctx2, 'app/etc/passwd'), 'owned\n');
    const { r: appendTar } = await import('tar');
    await appendTar({ file: evil, cwd: ctx2, portable: true }, ['app/etc/passwd']);
    const layer = join(dir, 'l3');
    await mkdir(layer);
    await expect(copyIntoLayer({ ...base(layer), tarball: evil, sources: ['app/'], dest: '/app/' })).rejects.toThrow(
      CopyStepError,
    );
  });
});
