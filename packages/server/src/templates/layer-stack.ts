/**
 * Read-only lookups in a stack of overlay layers (top first), the way the
 * overlay filesystem will present them to a sandbox: the first layer that
 * has a path wins, and a whiteout (a 0:0 character device) hides it.
 */

import { constants as fsConstants, type Stats } from 'node:fs';
import { lstat, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';

/** Most symlinks followed while resolving one path (as the kernel's MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;

function isWhiteout(st: Stats): boolean {
  return (st.mode & fsConstants.S_IFMT) === fsConstants.S_IFCHR && st.rdev === 0;
}

/** The entry at an absolute in-sandbox path, with the layer it comes from, or undefined. */
export async function lookupInStack(
  layers: readonly string[],
  path: string,
): Promise<{ layer: string; hostPath: string; stats: Stats } | undefined> {
  for (const layer of layers) {
    const hostPath = join(layer, path);
    try {
      const stats = await lstat(hostPath);
      if (isWhiteout(stats)) return undefined;
      return { layer, hostPath, stats };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    }
  }
  return undefined;
}

/**
 * Resolves the symlinks of an absolute path inside the stacked root, never
 * leaving it (`..` at the root stays at the root, absolute link targets
 * start from the stacked root). Components that don't exist are kept as
 * they are. Returns a normalized absolute path with no trailing slash.
 * @throws Error on a symlink loop.
 */
export async function resolveInStack(layers: readonly string[], path: string): Promise<string> {
  let pending = posix
    .normalize(`/${path}`)
    .split('/')
    .filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift() as string;
    if (c === '..') {
      done.pop();
      continue;
    }
    const candidate = `/${[...done, c].join('/')}`;
    const found = await lookupInStack(layers, candidate);
    if (found?.stats.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) throw new Error(`too many symlinks resolving ${path}`);
      const target = await readlink(found.hostPath);
      const parts = target.split('/').filter((x) => x !== '' && x !== '.');
      if (target.startsWith('/')) done.length = 0;
      pending = [...parts, ...pending];
      continue;
    }
    done.push(c);
  }
  return `/${done.join('/')}`;
}

/** Reads a file of the stacked root (following symlinks inside it), or undefined when it is missing. */
export async function readFileInStack(layers: readonly string[], path: string): Promise<string | undefined> {
  const resolved = await resolveInStack(layers, path);
  const found = await lookupInStack(layers, resolved);
  if (!found?.stats.isFile()) return undefined;
  return readFile(found.hostPath, 'utf8');
}

/** Resolves `user[:group]` (names or numbers) with the stacked root's /etc/passwd and /etc/group. */
export async function resolveOwner(
  layers: readonly string[],
  owner: string,
): Promise<{ uid: number; gid: number } | undefined> {
  const [userPart, groupPart] = owner.split(':') as [string, string | undefined];
  const passwd = (await readFileInStack(layers, '/etc/passwd')) ?? '';
  const groups = (await readFileInStack(layers, '/etc/group')) ?? '';
  const lookup = (table: string, name: string): { id: number; gid: number } | undefined => {
    if (/^\d+$/.test(name)) return { id: Number(name), gid: Number(name) };
    for (const line of table.split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined) return { id: Number(f[2]), gid: Number(f[3] ?? f[2]) };
    }
    if (name === 'root') return { id: 0, gid: 0 };
    return undefined;
  };
  const user = lookup(passwd, userPart);
  if (!user) return undefined;
  if (groupPart === undefined) return { uid: user.id, gid: user.gid };
  const group = lookup(groups, groupPart);
  if (!group) return undefined;
  return { uid: user.id, gid: group.id };
}
