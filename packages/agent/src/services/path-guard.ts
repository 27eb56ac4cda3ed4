import { lstat, readlink, realpath } from 'node:fs/promises';
import { posix } from 'node:path';
import { ErrorCode, ServiceError } from '@warren/protocol';

/** Symlink hops followed before a path counts as a loop. */
const MAX_SYMLINK_HOPS = 40;

/** True when `path` is `root` or lies below it (both absolute and normalized). */
export function isWithin(path: string, root: string): boolean {
  if (root === '/') return true;
  return path === root || path.startsWith(`${root}/`);
}

/** Absolute, normalized, no trailing slash; undefined for a relative path or one with NUL. */
export function normalizeAbsolute(raw: string): string | undefined {
  if (!raw.startsWith('/') || raw.includes('\0')) return undefined;
  const normalized = posix.normalize(raw);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Where `path` really points: symlinks are followed through every existing
 * component, a dangling symlink is followed to its target, and missing
 * components are appended to their deepest existing ancestor.
 */
export async function resolveReal(path: string, hops = 0): Promise<string> {
  if (hops > MAX_SYMLINK_HOPS) throw Object.assign(new Error('too many symlinks'), { code: 'ELOOP' });
  try {
    return await realpath(path);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  if (path === '/') return '/';
  const parent = posix.dirname(path);
  const link = await lstat(path).catch(() => undefined);
  if (link?.isSymbolicLink()) {
    const target = await readlink(path);
    const realParent = await resolveReal(parent, hops + 1);
    return resolveReal(posix.resolve(realParent, target), hops + 1);
  }
  return posix.join(await resolveReal(parent, hops), posix.basename(path));
}

/**
 * Confines file API paths to the allowed roots. A path is allowed when it is
 * absolute, its normalized form lies in a root, and where it really points
 * (after symlinks, see {@link resolveReal}) lies in a root too.
 */
export class PathGuard {
  readonly #roots: readonly string[];

  /** @param roots absolute, normalized roots. */
  constructor(roots: readonly string[]) {
    this.#roots = roots;
  }

  get roots(): readonly string[] {
    return this.#roots;
  }

  /**
   * The normalized path to operate on.
   * @throws {ServiceError} `PATH_NOT_ALLOWED` (403) with `path` when the path escapes the roots.
   */
  async resolve(raw: string): Promise<string> {
    const denied = () =>
      new ServiceError(
        ErrorCode.PATH_NOT_ALLOWED,
        `Path not allowed: ${raw} (allowed roots: ${this.#roots.join(', ')})`,
        {
          path: raw,
        },
      );
    const normalized = normalizeAbsolute(raw);
    if (normalized === undefined || !this.#roots.some((root) => isWithin(normalized, root))) throw denied();
    let real: string;
    try {
      real = await resolveReal(normalized);
    } catch {
      throw denied();
    }
    const realRoots = await Promise.all(this.#roots.map((root) => resolveReal(root).catch(() => root)));
    if (!realRoots.some((root) => isWithin(real, root))) throw denied();
    return normalized;
  }

  /** True when `path` (normalized) is one of the roots itself. */
  async isRoot(path: string): Promise<boolean> {
    if (this.#roots.includes(path)) return true;
    const real = await resolveReal(path).catch(() => path);
    const realRoots = await Promise.all(this.#roots.map((root) => resolveReal(root).catch(() => root)));
    return realRoots.includes(real);
  }
}
