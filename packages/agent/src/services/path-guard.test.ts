import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceError } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWithin, normalizeAbsolute, PathGuard, resolveReal } from './path-guard.ts';

let base: string;
let root: string;
let guard: PathGuard;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'warren-guard-test-'));
  root = join(base, 'root');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(join(base, 'outside'));
  await writeFile(join(base, 'outside', 'secret'), 's');
  await symlink(join(base, 'outside'), join(root, 'abs-link'));
  await symlink('../outside', join(root, 'rel-link'));
  await symlink('sub', join(root, 'inner-link'));
  await symlink(join(base, 'outside', 'not-yet'), join(root, 'dangling-out'));
  await symlink('sub/new-file', join(root, 'dangling-in'));
  await symlink('loop-b', join(root, 'loop-a'));
  await symlink('loop-a', join(root, 'loop-b'));
  guard = new PathGuard([root]);
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function denied(path: string): Promise<boolean> {
  try {
    await guard.resolve(path);
    return false;
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe('PATH_NOT_ALLOWED');
    expect((err as ServiceError).path).toBe(path);
    return true;
  }
}

describe('path helpers', () => {
  it('isWithin matches whole components only', () => {
    expect(isWithin('/workspace', '/workspace')).toBe(true);
    expect(isWithin('/workspace/a', '/workspace')).toBe(true);
    expect(isWithin('/workspace2/a', '/workspace')).toBe(false);
    expect(isWithin('/anything', '/')).toBe(true);
  });

  it('normalizeAbsolute refuses relative paths and NUL', () => {
    expect(normalizeAbsolute('/a//b/./c/')).toBe('/a/b/c');
    expect(normalizeAbsolute('/a/../../etc')).toBe('/etc');
    expect(normalizeAbsolute('a/b')).toBeUndefined();
    expect(normalizeAbsolute('/a\0b')).toBeUndefined();
  });

  it('resolveReal follows dangling symlinks and appends missing components', async () => {
    expect(await resolveReal(join(root, 'sub', 'x', 'y'))).toBe(join(root, 'sub', 'x', 'y'));
    expect(await resolveReal(join(root, 'dangling-out'))).toBe(join(base, 'outside', 'not-yet'));
    expect(await resolveReal(join(root, 'rel-link', 'secret'))).toBe(join(base, 'outside', 'secret'));
  });
});

describe('PathGuard.resolve', () => {
  it('allows paths inside the root, existing or not', async () => {
    expect(await guard.resolve(root)).toBe(root);
    expect(await guard.resolve(`${root}/sub/../sub/new.txt`)).toBe(join(root, 'sub', 'new.txt'));
    expect(await guard.resolve(join(root, 'inner-link', 'f'))).toBe(join(root, 'inner-link', 'f'));
    expect(await guard.resolve(join(root, 'dangling-in'))).toBe(join(root, 'dangling-in'));
  });

  it('denies relative paths, .. escapes and sibling prefixes', async () => {
    expect(await denied('sub/file')).toBe(true);
    expect(await denied(`${root}/../outside/secret`)).toBe(true);
    expect(await denied(`${root}-other/x`)).toBe(true);
    expect(await denied('/etc/passwd')).toBe(true);
  });

  it('denies absolute and relative symlink escapes, through directories and as the last component', async () => {
    expect(await denied(join(root, 'abs-link'))).toBe(true);
    expect(await denied(join(root, 'abs-link', 'secret'))).toBe(true);
    expect(await denied(join(root, 'abs-link', 'new', 'deep.txt'))).toBe(true);
    expect(await denied(join(root, 'rel-link'))).toBe(true);
    expect(await denied(join(root, 'rel-link', 'secret'))).toBe(true);
    expect(await denied(join(root, 'dangling-out'))).toBe(true);
  });

  it('denies symlink loops', async () => {
    expect(await denied(join(root, 'loop-a'))).toBe(true);
  });
});
