/**
 * A build's COPY step: unpacks the uploaded build-context tarball into a new,
 * empty layer directory, with the Dockerfile COPY semantics the Hopx SDKs
 * expect (a directory source copies its contents, a file source lands at the
 * destination or inside it when the destination is a directory).
 *
 * The tarball is untrusted. Entries that would land outside the destination
 * (absolute paths, `..`, a path through a symlink of the same tarball, a
 * hard link to something not copied) reject the whole step; nothing in the
 * layer directory is ever followed as a symlink while writing.
 */

import {
  createReadStream,
  createWriteStream,
  constants as fsConstants,
  lstatSync,
  mkdirSync,
  openSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { chmod, lchown, link, lutimes, open, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { lookupInStack, resolveInStack } from './layer-stack.ts';
import { readTar, type TarEntry, type TarEntryType } from './oci-tar.ts';

export class CopyStepError extends Error {}

export interface CopyLayerOptions {
  /** The uploaded `.tar.gz` (paths relative to the build context). */
  tarball: string;
  /** COPY sources as given (relative to the context; `.` is all of it; simple globs allowed). */
  sources: readonly string[];
  /** Absolute destination inside the image; a trailing `/` means a directory. */
  dest: string;
  /** Empty directory that becomes the step's layer. */
  layerDir: string;
  /** Layers below, top first (to resolve the destination and copy parent directory metadata). */
  lower: readonly string[];
  /** In-image owner of every copied entry (COPY defaults to root). */
  owner: { uid: number; gid: number };
  /** Mode applied to every copied file and directory, or null to keep the tarball's. */
  permissions: number | null;
  /** Added to in-image uids/gids to get the on-disk owner (the sandboxes' user namespace shift). */
  idShift: number;
  /** Bound on the total size of the copied files. */
  maxBytes: number;
}

interface Planned {
  entryPath: string;
  target: string;
}

const GLOB_CHARS = /[*?]/;

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Normalizes a tar entry path; undefined when it is absolute or climbs out with `..`. */
export function safeEntryPath(raw: string): string | undefined {
  if (raw.startsWith('/') || raw.includes('\0')) return undefined;
  const parts: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') return undefined;
    parts.push(c);
  }
  return parts.join('/');
}

/**
 * Where a context-relative entry lands (relative to `/`), or undefined when
 * no source selects it.
 */
export function mapEntry(
  entryPath: string,
  sources: readonly string[],
  dest: string,
  destIsDir: boolean,
  isDirectory: (entryPath: string) => boolean = () => false,
): string | undefined {
  for (const raw of sources) {
    const src = safeEntryPath(raw.replace(/\/+$/, '')) ?? '';
    if (src === '') return posix.join(dest, entryPath);
    if (GLOB_CHARS.test(src)) {
      const re = globToRegExp(src);
      const parts = entryPath.split('/');
      // The shortest leading part of the path the glob matches: a matched file, or a matched directory's contents.
      for (let n = 1; n <= parts.length; n++) {
        if (re.test(parts.slice(0, n).join('/'))) {
          const rest = parts.slice(n).join('/');
          return rest === '' ? posix.join(dest, parts[n - 1] as string) : posix.join(dest, rest);
        }
      }
      continue;
    }
    // The source directory itself is the destination directory; a source file lands at or inside it.
    if (entryPath === src) {
      if (isDirectory(entryPath)) return dest;
      return destIsDir ? posix.join(dest, posix.basename(src)) : dest;
    }
    if (entryPath.startsWith(`${src}/`)) return posix.join(dest, entryPath.slice(src.length + 1));
  }
  return undefined;
}

/** The entries of the uploaded tarball (gzip-compressed or not), read with Warren's own tar reader. */
async function* readEntries(tarball: string): AsyncGenerator<TarEntry> {
  const head = Buffer.alloc(2);
  const fh = await open(tarball, 'r');
  try {
    await fh.read(head, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const raw = createReadStream(tarball);
  const source = head[0] === 0x1f && head[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
  try {
    yield* readTar(source);
  } finally {
    raw.destroy();
  }
}

/**
 * Unpacks the selected part of the tarball into `layerDir`.
 * @returns the number of entries and bytes copied.
 * @throws CopyStepError when the tarball is malformed or an entry escapes.
 */
export async function copyIntoLayer(o: CopyLayerOptions): Promise<{ entries: number; bytes: number }> {
  // The destination as the sandbox will see it: symlinks of the image resolved (e.g. /bin -> usr/bin).
  const resolvedDest = await resolveInStack(o.lower, o.dest);
  const destExisting = await lookupInStack(o.lower, resolvedDest);
  const isSourceDir = new Map<string, boolean>();

  // Pass 1: list and validate every entry; decide where each one goes.
  const kinds = new Map<string, TarEntryType>();
  const links = new Map<string, string>();
  try {
    for await (const { header: h } of readEntries(o.tarball)) {
      const p = safeEntryPath(h.path);
      if (p === undefined) throw new CopyStepError(`COPY: tarball entry '${h.path}' escapes the build context`);
      kinds.set(p, h.type);
      if (h.type === 'hardlink') {
        const target = safeEntryPath(h.linkPath);
        if (target === undefined) {
          throw new CopyStepError(`COPY: hard link '${h.path}' points outside the build context`);
        }
        links.set(p, target);
      }
      if (h.type === 'directory') isSourceDir.set(p, true);
    }
  } catch (err) {
    if (err instanceof CopyStepError) throw err;
    throw new CopyStepError(`COPY: cannot read the uploaded files: ${(err as Error).message}`);
  }

  const sourceIsDir = o.sources.some((s) => {
    const src = safeEntryPath(s.replace(/\/+$/, '')) ?? '';
    return src === '' || GLOB_CHARS.test(src) || isSourceDir.get(src) === true;
  });
  const destIsDir =
    o.dest.endsWith('/') || o.sources.length > 1 || sourceIsDir || destExisting?.stats.isDirectory() === true;
  const base = destIsDir || sourceIsDir ? resolvedDest : posix.dirname(resolvedDest);
  const destFor = (p: string): string | undefined => {
    const mapped = mapEntry(p, o.sources, resolvedDest, destIsDir, (e) => isSourceDir.get(e) === true);
    return mapped === undefined ? undefined : posix.normalize(mapped);
  };

  const plan = new Map<string, Planned>();
  const symlinkTargets = new Set<string>();
  for (const [p, type] of kinds) {
    const target = destFor(p);
    if (target === undefined) continue;
    if (target !== base && !target.startsWith(`${base === '/' ? '' : base}/`))
      throw new CopyStepError(`COPY: entry '${p}' would land outside ${o.dest}`);
    if (!['file', 'directory', 'symlink', 'hardlink'].includes(type)) {
      throw new CopyStepError(`COPY: entry '${p}' has an unsupported type (${type})`);
    }
    if (type === 'symlink') symlinkTargets.add(target);
    plan.set(p, { entryPath: p, target });
  }
  if (plan.size === 0) throw new CopyStepError(`COPY: no uploaded file matches ${o.sources.join(', ')}`);
  for (const { entryPath, target } of plan.values()) {
    for (let dir = posix.dirname(target); dir !== '/' && dir !== '.'; dir = posix.dirname(dir)) {
      if (symlinkTargets.has(dir))
        throw new CopyStepError(`COPY: entry '${entryPath}' goes through a symlink of the same upload`);
    }
    const linked = links.get(entryPath);
    if (linked !== undefined && !plan.has(linked))
      throw new CopyStepError(`COPY: hard link '${entryPath}' points to a file that is not copied`);
  }

  // Pass 2: write. Directories, files and symlinks in stream order; hard links and metadata afterwards.
  const uid = o.owner.uid + o.idShift;
  const gid = o.owner.gid + o.idShift;
  const ensured = new Set<string>();
  const ensureDir = async (inImage: string, fresh: boolean): Promise<void> => {
    if (inImage === '/' || ensured.has(inImage)) return;
    await ensureDir(posix.dirname(inImage), false);
    const host = join(o.layerDir, inImage);
    let st: ReturnType<typeof lstatSync> | undefined;
    try {
      st = lstatSync(host);
    } catch {
      st = undefined;
    }
    if (st && !st.isDirectory()) throw new CopyStepError(`COPY: ${inImage} is not a directory`);
    if (!st) {
      mkdirSync(host);
      if (!fresh) {
        // A parent the image already has: same owner and mode, so the merged view does not change it.
        const below = await lookupInStack(o.lower, inImage);
        if (below?.stats.isDirectory()) {
          await lchown(host, below.stats.uid, below.stats.gid);
          await chmod(host, below.stats.mode & 0o7777);
        } else {
          await lchown(host, o.idShift, o.idShift);
          await chmod(host, 0o755);
        }
      }
    }
    ensured.add(inImage);
  };

  const fixups: Array<{ host: string; mode: number; mtime: number; symlink: boolean }> = [];
  const pendingLinks: Array<{ host: string; from: string }> = [];
  let bytes = 0;
  const remove = (host: string) => {
    try {
      const st = lstatSync(host);
      if (st.isDirectory()) return false;
      unlinkSync(host);
    } catch {
      // nothing there
    }
    return true;
  };

  const handle = async (e: TarEntry, planned: Planned): Promise<void> => {
    const h = e.header;
    const host = join(o.layerDir, planned.target);
    const mode = o.permissions ?? h.mode;
    await ensureDir(posix.dirname(planned.target), false);
    switch (h.type) {
      case 'directory':
        await ensureDir(planned.target, true);
        fixups.push({ host, mode, mtime: h.mtime, symlink: false });
        return;
      case 'symlink':
        remove(host);
        symlinkSync(h.linkPath, host);
        fixups.push({ host, mode: 0, mtime: h.mtime, symlink: true });
        return;
      case 'hardlink':
        pendingLinks.push({ host, from: join(o.layerDir, plan.get(links.get(planned.entryPath) as string)!.target) });
        fixups.push({ host, mode, mtime: h.mtime, symlink: false });
        return;
      default: {
        bytes += h.size;
        if (bytes > o.maxBytes) throw new CopyStepError(`COPY: the files exceed ${o.maxBytes} bytes`);
        if (!remove(host)) throw new CopyStepError(`COPY: ${planned.target} is a directory`);
        const fd = openSync(
          host,
          fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
          0o600,
        );
        await pipeline(Readable.from(e.body), createWriteStream('', { fd }));
        fixups.push({ host, mode, mtime: h.mtime, symlink: false });
      }
    }
  };

  try {
    for await (const e of readEntries(o.tarball)) {
      const p = safeEntryPath(e.header.path);
      const planned = p === undefined ? undefined : plan.get(p);
      if (planned) await handle(e, planned);
    }
    for (const l of pendingLinks) {
      remove(l.host);
      await link(l.from, l.host);
    }
    for (const f of fixups) {
      await lchown(f.host, uid, gid);
      if (!f.symlink) await chmod(f.host, f.mode);
      await lutimes(f.host, f.mtime, f.mtime).catch(() => undefined);
    }
  } catch (err) {
    await rm(o.layerDir, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof CopyStepError) throw err;
    throw new CopyStepError(`COPY failed: ${(err as Error).message}`);
  }
  return { entries: plan.size, bytes };
}
