/**
 * Applies image layers (tar, gzip-compressed or not) to a root filesystem in
 * order, the way a container runtime's overlay would show them: whiteouts
 * (`.wh.<name>`) delete what lower layers put there, an opaque marker
 * (`.wh..wh..opq`) hides a directory's lower content.
 *
 * Everything stays inside the root: an entry path with `..` or a leading `/`
 * is refused, and parent directories are resolved as a chroot would (a
 * symlink in a parent path is followed, but always relative to the root and
 * never above it), so no write, link or deletion lands outside. Device nodes
 * and fifos are skipped with a log line. Owners are written as in the image
 * (ids above 65535 become 65534); the caller shifts them afterwards.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readlink,
  rm,
  symlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { SANDBOX_ID_RANGE } from './builder.ts';
import { ImageError, ImageErrorCode } from './oci-errors.ts';
import { readTar, TarFormatError, type TarHeader } from './oci-tar.ts';

/** The id files owned by an id outside 0..65535 get (`nobody`). */
const OVERFLOW_ID = 65_534;

/** errno codes that say something about the host, not the image. */
const HOST_ERRNO_CODES = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EMFILE', 'ENFILE', 'ENOMEM', 'EACCES', 'EPERM']);

/** Symlinks followed while resolving one parent path, as Linux's MAXSYMLINKS. */
const MAX_SYMLINK_HOPS = 40;

/** A byte allowance shared by every layer of one image. */
export class ByteBudget {
  used = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** @throws ImageError TOO_LARGE once more than `maxBytes` have been taken. */
  take(bytes: number, what: string): void {
    this.used += bytes;
    if (this.used > this.maxBytes) {
      throw new ImageError(
        ImageErrorCode.TOO_LARGE,
        `${what} is larger than the limit of ${formatBytes(this.maxBytes)} uncompressed`,
      );
    }
  }
}

/** `1.5 GiB`-style size for messages. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Options of `applyLayer`. */
export interface ApplyLayerOptions {
  /** Name of the layer for messages (its digest). */
  readonly label: string;
  readonly budget: ByteBudget;
  readonly onLog: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** What `applyLayer` did. */
export interface AppliedLayer {
  /** `sha256:<hex>` of the uncompressed tar (the image config's `rootfs.diff_ids` entry). */
  readonly diffId: string;
  readonly entries: number;
  readonly uncompressedBytes: number;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Applies one layer to `rootfs`. The compression is taken from the data
 * itself (gzip or none; zstd is refused), so a media type that lies about it
 * does no harm. The whole source is read, even past the end-of-archive marker.
 *
 * @throws ImageError PATH_ESCAPE, INVALID_IMAGE, UNSUPPORTED or TOO_LARGE; the abort reason on abort.
 */
export async function applyLayer(
  rootfs: string,
  source: AsyncIterable<Uint8Array>,
  options: ApplyLayerOptions,
): Promise<AppliedLayer> {
  const { head, rest, drain } = await peek(source, 4);
  const diffHash = createHash('sha256');
  let uncompressedBytes = 0;
  const counted = async function* (input: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
    for await (const chunk of input) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      uncompressedBytes += buffer.length;
      options.budget.take(buffer.length, 'the image');
      diffHash.update(buffer);
      yield buffer;
    }
  };
  const applier = new LayerApplier(rootfs, options);
  try {
    if (head.subarray(0, 4).equals(ZSTD_MAGIC)) {
      throw new ImageError(
        ImageErrorCode.UNSUPPORTED,
        `layer ${options.label} is zstd-compressed, which Warren does not support; push the image with gzip layers`,
      );
    }
    if (head.subarray(0, 2).equals(GZIP_MAGIC)) {
      // Errors of the source (a digest mismatch) win over what they cause downstream (broken gzip).
      let sourceFailure: unknown;
      const recorded = async function* () {
        try {
          yield* rest;
        } catch (err) {
          sourceFailure = err;
          throw err;
        }
      };
      const input = Readable.from(recorded());
      const gunzip = createGunzip();
      input.on('error', (err) => gunzip.destroy(err));
      input.pipe(gunzip);
      try {
        await applier.applyAll(counted(gunzip));
      } catch (err) {
        throw sourceFailure ?? err;
      } finally {
        input.destroy();
        gunzip.destroy();
      }
    } else {
      await applier.applyAll(counted(rest));
    }
  } catch (err) {
    if (err instanceof ImageError || options.signal?.aborted) throw err;
    // Data that is not valid gzip or tar may simply be the wrong bytes: read the rest so
    // that a digest check on the source reports a mismatch instead.
    await drain().catch((drainErr: unknown) => {
      if (drainErr instanceof ImageError && drainErr.code === ImageErrorCode.DIGEST_MISMATCH) throw drainErr;
    });
    if (err instanceof TarFormatError) {
      throw new ImageError(ImageErrorCode.INVALID_IMAGE, `layer ${options.label} is not a valid tar: ${err.message}`, {
        cause: err,
      });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code === 'ERR_ZLIB_INITIALIZATION_FAILED') {
      throw new ImageError(
        ImageErrorCode.INVALID_IMAGE,
        `layer ${options.label} is not valid gzip: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
  if (applier.skipped > 0)
    options.onLog(`layer ${short(options.label)}: skipped ${applier.skipped} device nodes/fifos`);
  return { diffId: `sha256:${diffHash.digest('hex')}`, entries: applier.entries, uncompressedBytes };
}

/**
 * The first `n` bytes of a stream (fewer if it is shorter), the whole stream
 * again as `rest`, and `drain` to read whatever `rest`'s reader left unread.
 */
async function peek(
  source: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Buffer; rest: AsyncIterable<Uint8Array>; drain: () => Promise<void> }> {
  const iterator = source[Symbol.asyncIterator]();
  const taken: Uint8Array[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    taken.push(next.value);
    length += next.value.byteLength;
  }
  const head = Buffer.concat(taken);
  const rest = (async function* () {
    yield* taken;
    while (!done) {
      const next = await iterator.next();
      if (next.done) done = true;
      else yield next.value;
    }
  })();
  const drain = async () => {
    while (!done) {
      const next = await iterator.next();
      if (next.done) done = true;
    }
  };
  return { head, rest, drain };
}

function short(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** `a/./b/` → `['a', 'b']`. @throws ImageError PATH_ESCAPE for `..` or an absolute path, INVALID_IMAGE for a NUL byte. */
export function entryPathParts(path: string, what = 'entry'): string[] {
  if (path.includes('\0')) {
    throw new ImageError(
      ImageErrorCode.INVALID_IMAGE,
      `layer ${what} ${JSON.stringify(path)} has a NUL byte in its path`,
    );
  }
  if (path.startsWith('/')) {
    throw new ImageError(ImageErrorCode.PATH_ESCAPE, `layer ${what} ${JSON.stringify(path)} is an absolute path`);
  }
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) {
    throw new ImageError(ImageErrorCode.PATH_ESCAPE, `layer ${what} ${JSON.stringify(path)} points outside the image`);
  }
  return parts;
}

class LayerApplier {
  entries = 0;
  skipped = 0;
  private overflowIds = 0;
  /** Real paths (relative to the root, `/`-joined) this layer created or declared. */
  private readonly created = new Set<string>();
  /**
   * Resolved parent directories (`a/b` → real parts). Valid while nothing is
   * removed: creating entries never changes how an existing path resolves.
   */
  private readonly resolved = new Map<string, string[]>();
  private readonly root: string;
  private readonly options: ApplyLayerOptions;

  constructor(root: string, options: ApplyLayerOptions) {
    this.root = root;
    this.options = options;
  }

  async applyAll(tar: AsyncIterable<Buffer>): Promise<void> {
    for await (const entry of readTar(tar)) {
      this.options.signal?.throwIfAborted();
      try {
        await this.apply(entry.header, entry.body);
      } catch (err) {
        throw this.entryError(err, entry.header.path);
      }
      this.entries++;
    }
    if (this.overflowIds > 0) {
      this.options.onLog(
        `layer ${short(this.options.label)}: ${this.overflowIds} entries owned by ids above 65535 now belong to ${OVERFLOW_ID}`,
      );
    }
  }

  /**
   * A filesystem error caused by what an entry asks for (a name too long, a
   * file where a directory must be) as an INVALID_IMAGE naming the entry;
   * host trouble (disk full, I/O errors) and every other error as they are.
   */
  private entryError(err: unknown, path: string): unknown {
    const { syscall, code, message } = err as NodeJS.ErrnoException;
    if (syscall === undefined || code === undefined || HOST_ERRNO_CODES.has(code)) return err;
    return new ImageError(
      ImageErrorCode.INVALID_IMAGE,
      `layer ${short(this.options.label)}: cannot apply entry ${JSON.stringify(path)}: ${message}`,
      { cause: err },
    );
  }

  private path(parts: readonly string[]): string {
    return join(this.root, ...parts);
  }

  /**
   * The real directory (as parts below the root, every one a directory) that
   * `parts` names, following symlinks relative to the root and never above it.
   * Missing directories are created (mode 0755, root) when `create`, else `undefined`.
   */
  private async resolveDir(parts: readonly string[], create: boolean): Promise<string[] | undefined> {
    const key = parts.join('/');
    const known = this.resolved.get(key);
    if (known) return known;
    const real: string[] = [];
    const queue = [...parts];
    let hops = 0;
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === '' || name === '.') continue;
      if (name === '..') {
        real.pop();
        continue;
      }
      const path = this.path([...real, name]);
      const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (st === undefined) {
        if (!create) return undefined;
        await mkdir(path, { mode: 0o755 });
        await chmod(path, 0o755);
        real.push(name);
        this.created.add(real.join('/'));
      } else if (st.isDirectory()) {
        real.push(name);
      } else if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new ImageError(ImageErrorCode.INVALID_IMAGE, `too many levels of symlinks in ${parts.join('/')}`);
        }
        const target = await readlink(path);
        if (target.startsWith('/')) real.length = 0;
        queue.unshift(...target.split('/'));
      } else {
        throw new ImageError(
          ImageErrorCode.INVALID_IMAGE,
          `layer ${short(this.options.label)}: ${[...real, name].join('/')} is not a directory (needed for ${parts.join('/')})`,
        );
      }
    }
    this.resolved.set(key, real);
    return real;
  }

  /** Removes a tree (never following symlinks) and forgets every resolved directory. */
  private async remove(path: string): Promise<void> {
    this.resolved.clear();
    await rm(path, { recursive: true, force: true });
  }

  private async apply(header: TarHeader, body: AsyncIterable<Buffer>): Promise<void> {
    const parts = entryPathParts(header.path);
    const base = parts.at(-1);
    if (base === undefined) return; // the root itself: keep its owner and mode
    const parentParts = parts.slice(0, -1);

    if (base.startsWith('.wh.')) {
      await this.whiteout(parentParts, base);
      return;
    }

    if (header.type === 'char' || header.type === 'block' || header.type === 'fifo') {
      this.skipped++;
      this.options.onLog(`layer ${short(this.options.label)}: skipping ${header.type} ${parts.join('/')}`);
      return;
    }
    if (header.type === 'other') {
      throw new ImageError(
        ImageErrorCode.UNSUPPORTED,
        `layer ${short(this.options.label)}: entry ${parts.join('/')} has unsupported tar type ${JSON.stringify(header.typeFlag)}`,
      );
    }

    // Resolve a hard link's source before the target is replaced.
    let linkSource: string | undefined;
    if (header.type === 'hardlink') linkSource = await this.hardlinkSource(header.linkPath);

    const dir = (await this.resolveDir(parentParts, true))!;
    const realParts = [...dir, base];
    const target = this.path(realParts);
    const existing = await lstat(target).catch(() => undefined);
    if (existing && !(header.type === 'directory' && existing.isDirectory())) {
      await this.remove(target);
    }
    this.created.add(realParts.join('/'));

    const uid = this.mapId(header.uid);
    const gid = this.mapId(header.gid);
    switch (header.type) {
      case 'directory':
        if (!existing?.isDirectory()) await mkdir(target, { mode: 0o700 });
        await lchown(target, uid, gid);
        await chmod(target, header.mode);
        return;
      case 'file': {
        const handle = await open(
          target,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of body) await handle.write(chunk);
        } finally {
          await handle.close();
        }
        await lchown(target, uid, gid);
        await chmod(target, header.mode);
        await utimes(target, header.mtime, header.mtime);
        return;
      }
      case 'symlink':
        await symlink(header.linkPath, target);
        await lchown(target, uid, gid);
        await lutimes(target, header.mtime, header.mtime);
        return;
      case 'hardlink':
        // link(2) does not follow a symlink source: the link gets the symlink itself.
        await link(linkSource!, target);
        return;
    }
  }

  private async hardlinkSource(linkPath: string): Promise<string> {
    const parts = entryPathParts(linkPath, 'hard link target');
    const base = parts.at(-1);
    const dir = base === undefined ? undefined : await this.resolveDir(parts.slice(0, -1), false);
    const source = dir === undefined || base === undefined ? undefined : this.path([...dir, base]);
    const st = source === undefined ? undefined : await lstat(source).catch(() => undefined);
    if (source === undefined || st === undefined || st.isDirectory()) {
      throw new ImageError(
        ImageErrorCode.INVALID_IMAGE,
        `layer ${short(this.options.label)}: hard link to ${JSON.stringify(linkPath)}, which is not a file in the image`,
      );
    }
    return source;
  }

  private async whiteout(parentParts: readonly string[], base: string): Promise<void> {
    const name = base.slice('.wh.'.length);
    if (name === '' || name === '.' || name === '..') {
      throw new ImageError(ImageErrorCode.PATH_ESCAPE, `layer whiteout ${JSON.stringify(base)} names no entry`);
    }
    const dir = await this.resolveDir(parentParts, false);
    if (dir === undefined) return;
    if (base === '.wh..wh..opq') {
      await this.hideLower(dir);
      return;
    }
    if (base.startsWith('.wh..wh.')) return; // other AUFS metadata (hard link directories)
    await this.remove(this.path([...dir, name]));
  }

  /** Removes everything under `dir` that this layer did not create itself. */
  private async hideLower(dir: readonly string[]): Promise<void> {
    for (const name of await readdir(this.path(dir))) {
      const child = [...dir, name];
      if (!this.created.has(child.join('/'))) await this.remove(this.path(child));
      else if ((await lstat(this.path(child))).isDirectory()) await this.hideLower(child);
    }
  }

  private mapId(id: number): number {
    if (id < SANDBOX_ID_RANGE) return id;
    this.overflowIds++;
    return OVERFLOW_ID;
  }
}

/** A blob descriptor's identity: `sha256:<hex>` digest and, when known, size in bytes. */
export interface BlobIdentity {
  readonly digest: string;
  readonly size?: number;
}

/**
 * Passes `source` through while hashing it; after the last byte, throws
 * ImageError DIGEST_MISMATCH unless the data hashes to `expected.digest` (and
 * has `expected.size` bytes). Data longer than `expected.size` fails as soon
 * as it is seen, so an endless stream stops early.
 */
export async function* verifiedBlob(
  source: AsyncIterable<Uint8Array>,
  expected: BlobIdentity,
  label: string,
): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of source) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    bytes += buffer.length;
    if (expected.size !== undefined && bytes > expected.size) {
      throw new ImageError(
        ImageErrorCode.DIGEST_MISMATCH,
        `${label} is larger than the ${expected.size} bytes its descriptor says`,
      );
    }
    hash.update(buffer);
    yield buffer;
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (expected.size !== undefined && bytes !== expected.size) {
    throw new ImageError(
      ImageErrorCode.DIGEST_MISMATCH,
      `${label} has ${bytes} bytes, its descriptor says ${expected.size}`,
    );
  }
  if (actual !== expected.digest) {
    throw new ImageError(ImageErrorCode.DIGEST_MISMATCH, `${label} has digest ${actual}, expected ${expected.digest}`);
  }
}
