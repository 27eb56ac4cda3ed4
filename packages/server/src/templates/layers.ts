/**
 * The layer cache of template builds. A layer is a directory used as an
 * overlay lower layer; its key is a hash of its parent's key and the step
 * that made it, so an unchanged prefix of steps is reused by every build.
 *
 * ```
 * <cacheDir>/layers/<key>/        the layer (files owned by shifted ids)
 * <cacheDir>/layers/<key>.json    written last: the layer is complete
 * <cacheDir>/layers/<key>.tmp-*   a layer being made
 * ```
 */

import { createHash } from 'node:crypto';
import { chmod, lchown, lstat, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { RUNTIME_BUNDLE_MOUNT } from '../runtime/bundle.ts';
import { SANDBOX_ID_SHIFT } from './builder.ts';
import { lookupInStack } from './layer-stack.ts';

/** Bump when a change makes layers with the same inputs differ. */
const LAYER_RECIPE_VERSION = 2;

/** Longest `lowerdir=` option the overlay mount takes comfortably (its data is limited to one page). */
export const MAX_LOWERDIR_CHARS = 3500;

export function layerKey(parentKey: string, step: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: LAYER_RECIPE_VERSION, parent: parentKey, step }))
    .digest('hex')
    .slice(0, 32);
}

export class LayerCache {
  readonly dir: string;

  constructor(cacheDir: string) {
    this.dir = join(cacheDir, 'layers');
  }

  path(key: string): string {
    return join(this.dir, key);
  }

  async has(key: string): Promise<boolean> {
    return lstat(join(this.dir, `${key}.json`)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Makes a layer: `fill` writes into an empty directory (or returns the
   * directory it filled elsewhere on the same filesystem), which then becomes
   * the layer atomically.
   */
  async create(
    key: string,
    meta: Record<string, unknown>,
    fill: (dir: string) => Promise<string | undefined>,
  ): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const tmp = await mkdtemp(join(this.dir, `${key}.tmp-`));
    try {
      const work = join(tmp, 'layer');
      await mkdir(work);
      const filled = (await fill(work)) ?? work;
      await chmod(filled, 0o755);
      await rm(this.path(key), { recursive: true, force: true });
      await rename(filled, this.path(key));
      await writeFile(
        join(this.dir, `${key}.json`),
        `${JSON.stringify({ key, ...meta, createdAt: new Date().toISOString() })}\n`,
      );
      return this.path(key);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async meta(key: string): Promise<Record<string, unknown> | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, `${key}.json`), 'utf8')) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
}

/** Plain files the runtime binds over; they must exist as regular files. */
const RUNTIME_FILES: ReadonlyArray<readonly [path: string, content: string]> = [
  ['/etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'],
  ['/etc/hostname', 'sandbox\n'],
  ['/etc/resolv.conf', ''],
];

/**
 * Fills the top layer every built template gets: the runtime's mount points
 * and bound files, and the working directory, created only where the image
 * lacks them, with the image's own owner and mode for existing parents.
 */
export async function fillRuntimeLayer(dir: string, lower: readonly string[], workdir: string): Promise<void> {
  const root = SANDBOX_ID_SHIFT;
  const ensureDir = async (path: string): Promise<void> => {
    if (path === '/') return;
    await ensureDir(posix.dirname(path));
    const host = join(dir, path);
    if (await lstat(host).catch(() => undefined)) return;
    const below = await lookupInStack(lower, path);
    if (below?.stats.isDirectory()) {
      // Present in the image: only created here when something below it is new, with the same owner and mode.
      await mkdir(host);
      await lchown(host, below.stats.uid, below.stats.gid);
      await chmod(host, below.stats.mode & 0o7777);
      return;
    }
    await mkdir(host);
    await lchown(host, root, root);
    await chmod(host, 0o755);
  };
  for (const d of [workdir, RUNTIME_BUNDLE_MOUNT, '/run', '/tmp', '/proc', '/sys', '/dev']) {
    const below = await lookupInStack(lower, d);
    if (below?.stats.isDirectory()) continue;
    await ensureDir(d);
    if (d === '/tmp') await chmod(join(dir, d), 0o1777);
  }
  for (const [path, content] of RUNTIME_FILES) {
    const below = await lookupInStack(lower, path);
    if (below?.stats.isFile()) continue;
    await ensureDir(posix.dirname(path));
    await writeFile(join(dir, path), content, { mode: 0o644 });
    await lchown(join(dir, path), root, root);
  }
}
