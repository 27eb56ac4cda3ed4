/**
 * OCI images as template bases: pulled from a registry over the OCI
 * distribution API (`oci-registry.ts`) or imported from an OCI layout, an
 * `oci-archive` tar or a `docker save` tar (`oci-archive.ts`), then flattened
 * into one root filesystem (`oci-layers.ts`) owned by host ids shifted by
 * `SANDBOX_ID_SHIFT`, and cached by manifest digest.
 *
 * Layout under `cacheDir`:
 *
 * ```
 * <hex>-r<N>/rootfs       the flattened tree (uid 0 in the image = 100000 on disk)
 * <hex>-r<N>/image.json   digest, config, source and layers it was made from
 * <hex>-r<N>.lock         flock(2) lock held while it is being made
 * <hex>-r<N>.tmp-XXXXXX/  one being made (renamed into place when complete)
 * ```
 *
 * `<hex>` is the sha256 of the platform manifest, `N` is `OCI_ROOTFS_VERSION`.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SANDBOX_ID_SHIFT, shiftOwnership, withFileLock } from './builder.ts';
import { importArchiveSource } from './oci-archive.ts';
import { ImageError, ImageErrorCode } from './oci-errors.ts';
import { applyLayer, ByteBudget, formatBytes } from './oci-layers.ts';
import type { ImageConfig, ImageSource } from './oci-manifest.ts';
import { resolveRegistrySource } from './oci-registry.ts';

export { ImageError, ImageErrorCode } from './oci-errors.ts';
export type { ImageConfig } from './oci-manifest.ts';

/**
 * Version of the flattening recipe, part of every cache entry's name: bump it
 * when a change here or in `oci-layers.ts` changes the resulting tree.
 */
export const OCI_ROOTFS_VERSION = 1;

/** Default of `ImageOptions.maxBytes`: 8 GiB uncompressed. */
export const DEFAULT_IMAGE_MAX_BYTES = 8 * 1024 ** 3;

/** An image flattened into a root filesystem. */
export interface MaterializedImage {
  /** Absolute path of the tree, owned by host uid/gid `SANDBOX_ID_SHIFT` + (0..65535). */
  rootfs: string;
  /** `sha256:` digest of the image manifest (the config digest for a `docker save` archive). */
  digest: string;
  config: ImageConfig;
  /** The reference or archive it came from, e.g. `127.0.0.1:5000/app:1` or `oci-archive:/srv/app.tar`. */
  source: string;
  /** `true` when the tree was already in the cache and no layer was read. */
  cached: boolean;
}

/** Options of `pullImage` and `importImageArchive`. */
export interface ImageOptions {
  /** Directory of flattened images, e.g. `/var/cache/warren/images`. */
  cacheDir: string;
  /** Registry credentials (basic auth, also used to get a bearer token). */
  credentials?: { username: string; password: string };
  /**
   * Registry of short names like `python:3.11` (`docker.io` adds `library/`).
   * `null`: short names are not pulled.
   * @default null
   */
  defaultRegistry?: string | null;
  /** Registries (`host[:port]`) spoken to over plain http. `127.0.0.1:*`, `localhost:*` and `[::1]:*` always are. */
  insecureRegistries?: readonly string[];
  /** Archives are read only from inside this directory; without it `importImageArchive` refuses. */
  archiveDir?: string;
  /** Bound on the total uncompressed bytes of all layers. @default DEFAULT_IMAGE_MAX_BYTES */
  maxBytes?: number;
  signal?: AbortSignal;
  /** Progress lines for the build log (no trailing newline). */
  onLog?: (line: string) => void;
}

/** A registry image reference split into its parts. */
export interface ParsedReference {
  /** Registry as written (`docker.io`, `127.0.0.1:5000`). */
  readonly registry: string;
  /** Host (and port) the API is spoken to (`registry-1.docker.io` for `docker.io`). */
  readonly apiHost: string;
  /** Repository path (`library/python`). */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
  /** `registry/repository[:tag][@digest]`. */
  readonly canonical: string;
}

const REGISTRY_PATTERN =
  /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)+|\[[0-9a-fA-F:.]+\]|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))(?::[0-9]{1,5})?$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_PATTERN = /^[\w][\w.-]{0,127}$/;
const DIGEST_REF_PATTERN = /^sha256:[a-f0-9]{64}$/;

/**
 * Splits an image reference (`[registry/]repository[:tag][@sha256:…]`). The
 * first component is a registry when it has a `.` or `:` or is `localhost`;
 * otherwise the name is short and goes to `defaultRegistry`. Without a tag or
 * digest the tag is `latest`.
 *
 * @returns `undefined` when `ref` is not a valid reference, or is a short name and `defaultRegistry` is `null`.
 * @example parseImageReference('127.0.0.1:5000/tools/busybox:1', null)
 *   // { registry: '127.0.0.1:5000', repository: 'tools/busybox', tag: '1', … }
 */
export function parseImageReference(ref: string, defaultRegistry: string | null): ParsedReference | undefined {
  if (ref.length === 0 || ref.length > 512 || /\s/.test(ref)) return undefined;
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_REF_PATTERN.test(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_PATTERN.test(tag)) return undefined;
  }
  const slash = rest.indexOf('/');
  const first = slash === -1 ? undefined : rest.slice(0, slash);
  let registry: string;
  let repository: string;
  if (first !== undefined && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    repository = rest.slice(slash + 1);
  } else {
    if (defaultRegistry === null) return undefined;
    registry = defaultRegistry;
    repository = rest;
  }
  if (!REGISTRY_PATTERN.test(registry)) return undefined;
  const dockerHub = registry === 'docker.io' || registry === 'index.docker.io' || registry === 'registry-1.docker.io';
  if (dockerHub && !repository.includes('/')) repository = `library/${repository}`;
  if (repository.length === 0 || repository.length > 255) return undefined;
  if (!repository.split('/').every((part) => PATH_COMPONENT.test(part))) return undefined;
  if (tag === undefined && digest === undefined) tag = 'latest';
  const canonical = `${registry}/${repository}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
  return {
    registry,
    apiHost: dockerHub ? 'registry-1.docker.io' : registry,
    repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    canonical,
  };
}

/**
 * Pulls `ref` from its registry and returns it flattened into a cached root
 * filesystem. The manifest is always fetched (a tag can move, and so the
 * registry checks the credentials of every pull, even of a cached image); the
 * layers only when the manifest's digest is not cached yet.
 *
 * @example
 * const image = await pullImage('127.0.0.1:5000/tools/busybox:1', { cacheDir: '/var/cache/warren/images', onLog: console.error });
 * @throws ImageError with a code saying why (INVALID_REFERENCE, NOT_FOUND, UNAUTHORIZED, UNREACHABLE, UNSUPPORTED,
 *   DIGEST_MISMATCH, PATH_ESCAPE, TOO_LARGE, INVALID_IMAGE); the abort reason when `signal` aborts.
 */
export async function pullImage(ref: string, options: ImageOptions): Promise<MaterializedImage> {
  const parsed = parseImageReference(ref, options.defaultRegistry ?? null);
  if (!parsed) {
    const short = parseImageReference(ref, 'registry.invalid') !== undefined;
    throw new ImageError(
      ImageErrorCode.INVALID_REFERENCE,
      short
        ? `${JSON.stringify(ref)} names no registry and no default registry is configured`
        : `${JSON.stringify(ref)} is not a valid image reference`,
    );
  }
  const source = await resolveRegistrySource(parsed, {
    ...(options.credentials ? { credentials: options.credentials } : {}),
    insecureRegistries: options.insecureRegistries ?? [],
    log: logger(options),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  return materialize(source, options);
}

/**
 * Imports an image from an archive on the server: `oci:<dir>[:<ref>]` (an OCI
 * layout directory), `oci-archive:<file>[:<ref>]` (a tar of one),
 * `docker-archive:<file>[:<repo:tag>]` (a `docker save` tar), or a bare path
 * (the form is detected). Relative paths are taken inside `archiveDir`, and
 * any path that resolves (symlinks included) outside it is refused.
 *
 * @throws ImageError PATH_ESCAPE when outside `archiveDir` (or none is set), NOT_FOUND, INVALID_IMAGE,
 *   UNSUPPORTED, DIGEST_MISMATCH, TOO_LARGE.
 */
export async function importImageArchive(pathOrRef: string, options: ImageOptions): Promise<MaterializedImage> {
  const source = await importArchiveSource(pathOrRef, {
    ...(options.archiveDir !== undefined ? { archiveDir: options.archiveDir } : {}),
    log: logger(options),
  });
  return materialize(source, options);
}

function logger(options: ImageOptions): (line: string) => void {
  return (line) => {
    try {
      options.onLog?.(line);
    } catch {
      // A failing log callback must not break the pull.
    }
  };
}

// ---------------------------------------------------------------------------
// Cache

interface CacheRecord {
  digest: string;
  config: ImageConfig;
  source: string;
  layers: string[];
  recipeVersion: number;
  idShift: number;
  uncompressedBytes: number;
  materializedAt: string;
}

/** Unpackings in progress in this process, by cache entry, with the signal of the call doing it. */
const inflight = new Map<string, { promise: Promise<MaterializedImage>; signal: AbortSignal | undefined }>();

function entryDirOf(cacheDir: string, digest: string): string {
  return join(cacheDir, `${digest.replace(/^sha256:/, '')}-r${OCI_ROOTFS_VERSION}`);
}

async function readCacheEntry(
  entryDir: string,
  digest: string,
  source: string,
): Promise<MaterializedImage | undefined> {
  try {
    const record = JSON.parse(await readFile(join(entryDir, 'image.json'), 'utf8')) as CacheRecord;
    if (record.digest !== digest || record.recipeVersion !== OCI_ROOTFS_VERSION) return undefined;
    const rootfs = join(entryDir, 'rootfs');
    if (!(await stat(rootfs)).isDirectory()) return undefined;
    return { rootfs, digest, config: record.config, source, cached: true };
  } catch {
    return undefined;
  }
}

/**
 * Returns the cached tree of `source`, flattening it first if needed. A flock
 * lock keeps two processes from making the same entry at once; concurrent
 * calls in one process share one. A call that joined another's unpacking
 * still honours its own signal, and starts over if the other call is aborted.
 */
async function materialize(source: ImageSource, options: ImageOptions): Promise<MaterializedImage> {
  const log = logger(options);
  const entryDir = entryDirOf(options.cacheDir, source.digest);
  for (;;) {
    const hit = await readCacheEntry(entryDir, source.digest, source.source);
    if (hit) {
      log(`using cached image ${source.digest} for ${source.source}`);
      return hit;
    }
    const running = inflight.get(entryDir);
    if (!running) break;
    log(`joining a pull of ${source.digest} in progress`);
    try {
      return { ...(await untilAborted(running.promise, options.signal)), source: source.source };
    } catch (err) {
      if (options.signal?.aborted || !running.signal?.aborted) throw err;
      log(`the pull joined was cancelled; starting over`);
    }
  }
  const work = withFileLock(
    `${entryDir}.lock`,
    async () => {
      const ready = await readCacheEntry(entryDir, source.digest, source.source);
      if (ready) return ready;
      await removeStale(options.cacheDir, entryDir);
      return flatten(source, entryDir, options, log);
    },
    {
      ...(options.signal ? { signal: options.signal } : {}),
      onWait: () => log(`another process is unpacking ${source.digest}; waiting for it`),
    },
  ).finally(() => inflight.delete(entryDir));
  inflight.set(entryDir, { promise: work, signal: options.signal });
  const result = await work;
  if (result.cached) log(`using cached image ${source.digest} for ${source.source}`);
  return result;
}

/** `promise`, or the abort reason as soon as `signal` aborts (the work behind `promise` goes on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Removes `<entry>.tmp-*` directories left by a crashed pull. Call with the entry's lock held. */
async function removeStale(cacheDir: string, entryDir: string): Promise<void> {
  const prefix = `${entryDir.slice(cacheDir.length + 1)}.tmp-`;
  for (const name of await readdir(cacheDir).catch(() => [] as string[])) {
    if (name.startsWith(prefix)) await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

async function flatten(
  source: ImageSource,
  entryDir: string,
  options: ImageOptions,
  log: (line: string) => void,
): Promise<MaterializedImage> {
  const { signal } = options;
  await mkdir(options.cacheDir, { recursive: true, mode: 0o755 });
  const tmpDir = await mkdtemp(`${entryDir}.tmp-`);
  try {
    const rootfs = join(tmpDir, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    await chmod(rootfs, 0o755);
    const budget = new ByteBudget(options.maxBytes ?? DEFAULT_IMAGE_MAX_BYTES);
    const diffIds = source.config.diffIds;
    if (diffIds !== undefined && diffIds.length !== source.layers.length) {
      throw new ImageError(
        ImageErrorCode.INVALID_IMAGE,
        `${source.source}: the config lists ${diffIds.length} layers, the manifest ${source.layers.length}`,
      );
    }
    const total = source.layers.length;
    for (const [i, layer] of source.layers.entries()) {
      signal?.throwIfAborted();
      log(`layer ${i + 1}/${total} ${layer.digest} (${formatBytes(layer.size)})`);
      const stream = await source.openLayer(layer, signal);
      const applied = await applyLayer(rootfs, stream, {
        label: layer.digest,
        budget,
        onLog: log,
        ...(signal ? { signal } : {}),
      });
      const expected = diffIds?.[i];
      if (expected !== undefined && applied.diffId !== expected) {
        throw new ImageError(
          ImageErrorCode.DIGEST_MISMATCH,
          `layer ${layer.digest} uncompresses to ${applied.diffId}, the config says ${expected}`,
        );
      }
      log(`layer ${i + 1}/${total}: ${applied.entries} entries, ${formatBytes(applied.uncompressedBytes)}`);
    }
    log(`shifting ownership by ${SANDBOX_ID_SHIFT}`);
    const { entries } = await shiftOwnership(rootfs);
    signal?.throwIfAborted();
    const record: CacheRecord = {
      digest: source.digest,
      config: source.config.config,
      source: source.source,
      layers: source.layers.map((layer) => layer.digest),
      recipeVersion: OCI_ROOTFS_VERSION,
      idShift: SANDBOX_ID_SHIFT,
      uncompressedBytes: budget.used,
      materializedAt: new Date().toISOString(),
    };
    await writeFile(join(tmpDir, 'image.json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
    await chmod(tmpDir, 0o755);
    // Only a broken entry (no readable image.json) can be in the way; the lock is held.
    await rm(entryDir, { recursive: true, force: true });
    await rename(tmpDir, entryDir);
    log(`image ${source.digest} ready: ${entries} entries, ${formatBytes(budget.used)}`);
    return {
      rootfs: join(entryDir, 'rootfs'),
      digest: source.digest,
      config: source.config.config,
      source: source.source,
      cached: false,
    };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}
