/**
 * Builds the root filesystem of a Debian-based template with `mmdebstrap` and
 * caches it on disk, keyed by a hash of everything that decides its content.
 *
 * Layout under `cacheDir`:
 *
 * ```
 * templates/<name>-<hash16>/rootfs          the finished tree, owned by host uid/gid 100000+
 * templates/<name>-<hash16>/template.json   what was built, from what, and the installed packages
 * templates/<name>-<hash16>.lock            flock(2) lock held while that template is being built
 * templates/<name>-<hash16>.tmp-XXXXXX/     a build in progress (renamed into place when complete)
 * apt/*.deb                                 downloaded packages, reused by later builds
 * ```
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Dirent, Stats } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RUNTIME_BUNDLE_MOUNT } from '../runtime/bundle.ts';
import type { DebianRootfsRecipe } from './builtin.ts';

/**
 * Version of the build recipe (mmdebstrap options, post-processing). Part of
 * every content hash: bump it whenever a change here changes the resulting tree.
 */
export const BUILDER_RECIPE_VERSION = 2;

/** Host uid/gid that uid/gid 0 inside a sandbox maps to. */
export const SANDBOX_ID_SHIFT = 100_000;

/** Number of uids/gids mapped into a sandbox (0..65535 inside). */
export const SANDBOX_ID_RANGE = 65_536;

/** The host that mirror entries are taken from when reading the host's apt sources. */
export const DEBIAN_MIRROR_HOST = 'deb.debian.org';

/**
 * dpkg path filters written to `/etc/dpkg/dpkg.cfg.d/90warren-slim` in the
 * rootfs, so packages installed later inside a sandbox are trimmed too: no man
 * pages, info pages, translations or docs except copyright files. The build
 * itself runs without them (mmdebstrap applies dpkg filters to the essential
 * packages with a slow Python tar filter, ~25 s for `base`) and removes the same
 * paths afterwards, see `pruneDocs`.
 */
const DPKG_PATH_FILTERS = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/lintian/*',
  'path-exclude=/usr/share/locale/*',
  'path-include=/usr/share/locale/locale.alias',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
] as const;

/** apt options written into the rootfs: never install Recommends or Suggests. */
const APT_OPTIONS = ['APT::Install-Recommends "false"', 'APT::Install-Suggests "false"'] as const;

/** Plain files the runtime may bind over; they must exist as regular files, not symlinks. */
const RUNTIME_ETC_FILES: ReadonlyArray<readonly [path: string, content: string]> = [
  ['etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'],
  ['etc/hostname', 'sandbox\n'],
  ['etc/resolv.conf', ''],
];

/**
 * Empty directories the runtime mounts over (mode 0755). Present in the
 * template so the runtime never has to create them in a sandbox's upper layer.
 */
const MOUNT_POINTS = [RUNTIME_BUNDLE_MOUNT] as const;

/** What decides the content of a template's root filesystem. */
export interface TemplateRootfsSpec {
  /** Template name; used in the cache directory name. */
  readonly name: string;
  readonly rootfs: DebianRootfsRecipe;
  /** Directory created (mode 0755) in the rootfs for the sandbox's working directory. */
  readonly workdir: string;
}

/** Options of `ensureTemplateRootfs`. */
export interface EnsureTemplateRootfsOptions {
  /** Root of Warren's on-disk cache. */
  readonly cacheDir: string;
  /**
   * Receives live progress for a person to read: each output line of
   * mmdebstrap (apt downloads, dpkg unpacking and set-up), then one line per
   * finishing step. Lines have no trailing newline.
   */
  readonly onProgress?: (line: string) => void;
  /** Aborts the build (mmdebstrap is terminated and the partial tree removed). */
  readonly signal?: AbortSignal;
  /**
   * One-line apt source entries (`deb [signed-by=…] URI SUITE COMPONENT`).
   * @default the host's `deb.debian.org` entries, see `hostDebianSources`
   */
  readonly aptSources?: readonly string[];
}

/** A template root filesystem ready to be used as an overlay lower layer. */
export interface TemplateRootfs {
  /** Absolute path of the tree, owned by host uid/gid `SANDBOX_ID_SHIFT` + (0..65535). */
  readonly rootfsDir: string;
  /** sha256 (hex) of every input that decides the tree's content. */
  readonly contentHash: string;
  /** `true` when the tree came from the cache, `false` when this call built it. */
  readonly cached: boolean;
}

/** A failed build: mmdebstrap's exit code and the last lines it printed. */
export class TemplateBuildError extends Error {
  override readonly name = 'TemplateBuildError';
  readonly templateName: string;
  readonly exitCode: number | null;
  readonly logTail: readonly string[];

  constructor(templateName: string, message: string, details: { exitCode?: number | null; logTail?: string[] } = {}) {
    super(message);
    this.templateName = templateName;
    this.exitCode = details.exitCode ?? null;
    this.logTail = details.logTail ?? [];
  }
}

// ---------------------------------------------------------------------------
// Apt sources

/** An apt source entry, from either the one-line or the deb822 format. */
export interface AptSourceEntry {
  readonly types: readonly string[];
  readonly uris: readonly string[];
  readonly suites: readonly string[];
  readonly components: readonly string[];
  readonly signedBy?: string;
}

/** Parses a deb822 `.sources` file; paragraphs with `Enabled: no` are skipped. */
export function parseDeb822Sources(text: string): AptSourceEntry[] {
  const entries: AptSourceEntry[] = [];
  for (const paragraph of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let current: string | undefined;
    for (const line of paragraph.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^[ \t]/.test(line) && current !== undefined) {
        fields.set(current, `${fields.get(current) ?? ''}\n${line.trim()}`);
        continue;
      }
      const match = /^([A-Za-z0-9-]+):(.*)$/.exec(line);
      if (match) {
        current = match[1]!.toLowerCase();
        fields.set(current, match[2]!.trim());
      }
    }
    if (fields.size === 0 || fields.get('enabled')?.toLowerCase() === 'no') continue;
    const words = (key: string) => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
    const signedBy = fields.get('signed-by');
    entries.push({
      types: words('types'),
      uris: words('uris'),
      suites: words('suites'),
      components: words('components'),
      // An inline key block is not a path; only paths are carried over.
      ...(signedBy?.startsWith('/') && !signedBy.includes('\n') ? { signedBy } : {}),
    });
  }
  return entries;
}

/** Parses one-line `sources.list` entries (`deb [opts] URI SUITE COMPONENT...`). */
export function parseOneLineSources(text: string): AptSourceEntry[] {
  const entries: AptSourceEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const match = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!match) continue;
    const signedBy = /(?:^|\s)signed-by=(\S+)/.exec(match[2] ?? '')?.[1];
    entries.push({
      types: [match[1]!],
      uris: [match[3]!],
      suites: [match[4]!],
      components: match[5]!.split(/\s+/).filter(Boolean),
      ...(signedBy ? { signedBy } : {}),
    });
  }
  return entries;
}

/**
 * Turns the host's apt sources into one-line `deb` entries for `suite`, keeping
 * only binary entries on `DEBIAN_MIRROR_HOST` and the `main` component. Suites
 * named after the host's codename (`bookworm`, `bookworm-updates`,
 * `bookworm-security`) are renamed to the template's suite.
 */
export function debianSourcesFor(
  entries: readonly AptSourceEntry[],
  options: { suite: string; hostCodename?: string },
): string[] {
  const { suite, hostCodename } = options;
  const lines = new Set<string>();
  for (const entry of entries) {
    if (!entry.types.includes('deb') || !entry.components.includes('main')) continue;
    for (const uri of entry.uris) {
      let host: string;
      try {
        host = new URL(uri).hostname;
      } catch {
        continue;
      }
      if (host !== DEBIAN_MIRROR_HOST) continue;
      for (const hostSuite of entry.suites) {
        const mapped = mapSuite(hostSuite, suite, hostCodename);
        if (mapped === undefined) continue;
        const options = entry.signedBy ? `[signed-by=${entry.signedBy}] ` : '';
        lines.add(`deb ${options}${uri.replace(/\/+$/, '')} ${mapped} main`);
      }
    }
  }
  return [...lines];
}

function mapSuite(hostSuite: string, suite: string, hostCodename: string | undefined): string | undefined {
  if (hostCodename && hostSuite === hostCodename) return suite;
  if (hostCodename && hostSuite.startsWith(`${hostCodename}-`)) return suite + hostSuite.slice(hostCodename.length);
  if (hostSuite === suite || hostSuite.startsWith(`${suite}-`)) return hostSuite;
  return undefined;
}

/**
 * Reads the host's apt sources (`/etc/apt/sources.list`,
 * `/etc/apt/sources.list.d/*.list` and `*.sources`) and returns the
 * `deb.debian.org` entries rewritten for `suite`.
 *
 * @throws Error when the host has no such entry.
 */
export async function hostDebianSources(suite: string, options: { etcDir?: string } = {}): Promise<string[]> {
  const etc = options.etcDir ?? '/etc';
  const entries: AptSourceEntry[] = [];
  const readIfExists = async (path: string) => readFile(path, 'utf8').catch(() => '');
  entries.push(...parseOneLineSources(await readIfExists(join(etc, 'apt/sources.list'))));
  const partsDir = join(etc, 'apt/sources.list.d');
  const parts = await readdir(partsDir).catch(() => [] as string[]);
  for (const part of parts.sort()) {
    if (part.endsWith('.list')) entries.push(...parseOneLineSources(await readIfExists(join(partsDir, part))));
    if (part.endsWith('.sources')) entries.push(...parseDeb822Sources(await readIfExists(join(partsDir, part))));
  }
  const osRelease = await readIfExists(join(etc, 'os-release'));
  const hostCodename = /^VERSION_CODENAME=["']?([^"'\n]+)/m.exec(osRelease)?.[1];
  const lines = debianSourcesFor(entries, { suite, ...(hostCodename ? { hostCodename } : {}) });
  if (lines.length === 0) {
    throw new Error(
      `no ${DEBIAN_MIRROR_HOST} entry with component main in ${etc}/apt/sources.list or ${partsDir}; ` +
        'add one or pass aptSources',
    );
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Content hash

/** The dpkg architecture of this host (`amd64`, `arm64`). */
export function hostDpkgArchitecture(): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    ppc64: 'ppc64el',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  const arch = map[process.arch];
  if (!arch) throw new Error(`unsupported architecture ${process.arch}`);
  return arch;
}

/**
 * Hash of everything that decides a template rootfs: recipe version, suite,
 * variant, architecture, apt sources, package set (order and duplicates do not
 * matter), apt/dpkg options, workdir and the uid/gid shift. The template name
 * is not part of it. Packages come from a live mirror, so the same hash can
 * hold newer package versions when built later; `template.json` records the
 * versions actually installed.
 */
export function templateContentHash(
  spec: TemplateRootfsSpec,
  inputs: { aptSources: readonly string[]; architecture: string },
): string {
  const canonical = {
    recipe: BUILDER_RECIPE_VERSION,
    kind: spec.rootfs.kind,
    suite: spec.rootfs.suite,
    variant: spec.rootfs.variant,
    architecture: inputs.architecture,
    aptSources: [...new Set(inputs.aptSources)].sort(),
    packages: [...new Set(spec.rootfs.packages)].sort(),
    aptOptions: APT_OPTIONS,
    dpkgOptions: DPKG_PATH_FILTERS,
    etcFiles: RUNTIME_ETC_FILES,
    mountPoints: MOUNT_POINTS,
    workdir: spec.workdir,
    idShift: SANDBOX_ID_SHIFT,
  };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

// ---------------------------------------------------------------------------
// Locking

/**
 * Runs `fn` while holding an exclusive flock(2) lock on `lockPath` (created if
 * missing, never deleted). The lock lives on a file description that only this
 * process holds, so the kernel releases it when the process exits or crashes:
 * there is no stale lock to detect. The `flock` utility (util-linux) takes the
 * lock on that description; Node has no flock binding.
 *
 * @param options.onWait called once if the lock is held by someone else and this call has to wait.
 * @throws the abort reason if `signal` aborts while waiting.
 */
export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  options: { signal?: AbortSignal; onWait?: () => void } = {},
): Promise<T> {
  await mkdir(dirname(lockPath), { recursive: true });
  const handle = await open(lockPath, 'a', 0o644);
  try {
    if (!(await flockFd(handle.fd, true, options.signal))) {
      options.onWait?.();
      await flockFd(handle.fd, false, options.signal);
    }
    return await fn();
  } finally {
    await handle.close();
  }
}

const FLOCK_CONFLICT_EXIT = 75;

/** Locks the open file description behind `fd` through `flock(1)`. Resolves `false` if busy and `nonblock`. */
function flockFd(fd: number, nonblock: boolean, signal: AbortSignal | undefined): Promise<boolean> {
  signal?.throwIfAborted();
  const args = ['--exclusive', '--conflict-exit-code', String(FLOCK_CONFLICT_EXIT)];
  if (nonblock) args.push('--nonblock');
  args.push('3');
  return new Promise((resolve, reject) => {
    const child = spawn('flock', args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(signal.reason);
      else if (code === 0) resolve(true);
      else if (code === FLOCK_CONFLICT_EXIT && nonblock) resolve(false);
      else reject(new Error(`flock exited with ${code}: ${stderr.trim()}`));
    });
  });
}

// ---------------------------------------------------------------------------
// Ownership shift

/** Options of `shiftOwnership`. */
export interface ShiftOwnershipOptions {
  /** Added to every uid and gid. @default SANDBOX_ID_SHIFT */
  readonly offset?: number;
  /** Ids must be below this before the shift (catches a tree shifted twice). @default SANDBOX_ID_RANGE */
  readonly range?: number;
  /** Filesystem operations in flight at once. @default 32 */
  readonly concurrency?: number;
}

/**
 * Adds `offset` to the uid and gid of every entry under `root` (including
 * `root`) with lchown, so symlinks are changed themselves and never followed.
 * chown clears setuid/setgid bits; they are restored afterwards. A file with
 * several hard links is shifted once.
 *
 * @returns the number of entries changed.
 * @throws Error if an id is already outside `0..range-1` (the tree was shifted before); entries
 *   visited before that point stay shifted.
 */
export async function shiftOwnership(root: string, options: ShiftOwnershipOptions = {}): Promise<{ entries: number }> {
  const offset = options.offset ?? SANDBOX_ID_SHIFT;
  const range = options.range ?? SANDBOX_ID_RANGE;
  const concurrency = options.concurrency ?? 32;
  const seenInodes = new Set<string>();
  let entries = 0;

  const shiftOne = async (path: string, st: Stats) => {
    if (!st.isDirectory() && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (seenInodes.has(key)) return;
      seenInodes.add(key);
    }
    if (st.uid >= range || st.gid >= range) {
      throw new Error(`${path}: uid ${st.uid} gid ${st.gid} is outside 0..${range - 1}; is the tree already shifted?`);
    }
    await lchown(path, st.uid + offset, st.gid + offset);
    if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
    entries++;
  };

  const rootStat = await lstat(root);
  await shiftOne(root, rootStat);
  if (!rootStat.isDirectory()) return { entries };

  // Directories still to list. Workers pull from it until it is empty and nobody is listing.
  const pendingDirs: string[] = [root];
  let active = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const worker = async () => {
    while (failure === undefined) {
      const dir = pendingDirs.pop();
      if (dir === undefined) {
        if (active === 0) break;
        await new Promise<void>((resolve) => {
          const previous = wake;
          wake = () => {
            previous?.();
            resolve();
          };
        });
        continue;
      }
      active++;
      try {
        const children: Dirent[] = await readdir(dir, { withFileTypes: true });
        for (const child of children) {
          const path = join(dir, child.name);
          const st = await lstat(path);
          await shiftOne(path, st);
          if (st.isDirectory()) pendingDirs.push(path);
        }
      } catch (err) {
        failure ??= err;
      } finally {
        active--;
        const w = wake;
        wake = undefined;
        w?.();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (failure !== undefined) throw failure;
  return { entries };
}

// ---------------------------------------------------------------------------
// Building

const inflight = new Map<string, Promise<TemplateRootfs>>();

/**
 * Returns the cached root filesystem of `spec`, building it first if needed.
 *
 * The build runs `mmdebstrap` (in its own mount and pid namespaces) into a
 * temporary directory next to the cache entry, reuses and refills the `.deb`
 * cache in `${cacheDir}/apt`, removes docs, man pages and translations,
 * creates the workdir, the `/.warren` mount point and plain
 * `/etc/{hosts,hostname,resolv.conf}`, shifts ownership by
 * `SANDBOX_ID_SHIFT`, and renames the directory into place. A flock lock keeps
 * two processes from building the same template at once; concurrent calls in
 * one process share one build. A failed or aborted build leaves no entry
 * behind (only downloaded packages stay in the apt cache).
 *
 * @example
 * const { rootfsDir } = await ensureTemplateRootfs(codeInterpreterTemplate, {
 *   cacheDir: '/var/lib/warren',
 *   onProgress: (line) => console.error(`[code-interpreter] ${line}`),
 * });
 * @throws TemplateBuildError when mmdebstrap fails; the abort reason when `signal` aborts.
 */
export async function ensureTemplateRootfs(
  spec: TemplateRootfsSpec,
  options: EnsureTemplateRootfsOptions,
): Promise<TemplateRootfs> {
  const aptSources = options.aptSources ?? (await hostDebianSources(spec.rootfs.suite));
  const contentHash = templateContentHash(spec, { aptSources, architecture: hostDpkgArchitecture() });
  const templatesDir = join(options.cacheDir, 'templates');
  const entryName = `${spec.name}-${contentHash.slice(0, 16)}`;
  const entryDir = join(templatesDir, entryName);
  const emit = (line: string) => {
    try {
      options.onProgress?.(line);
    } catch {
      // A failing progress callback must not break the build.
    }
  };

  const cached = await readCachedEntry(entryDir, contentHash);
  if (cached) {
    emit(`using cached rootfs ${cached.rootfsDir}`);
    return cached;
  }

  const running = inflight.get(entryDir);
  if (running) {
    emit('joining a build of the same template in progress');
    return running;
  }
  const build = withFileLock(
    `${entryDir}.lock`,
    async () => {
      const ready = await readCachedEntry(entryDir, contentHash);
      if (ready) return ready;
      await removeStaleBuilds(templatesDir, entryName);
      return buildEntry(spec, { ...options, aptSources, contentHash, entryDir, emit });
    },
    {
      ...(options.signal ? { signal: options.signal } : {}),
      onWait: () => emit('another process is building this template; waiting for it'),
    },
  ).finally(() => inflight.delete(entryDir));
  inflight.set(entryDir, build);
  const result = await build;
  emit(result.cached ? `using cached rootfs ${result.rootfsDir}` : `rootfs ready at ${result.rootfsDir}`);
  return result;
}

async function readCachedEntry(entryDir: string, contentHash: string): Promise<TemplateRootfs | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(entryDir, 'template.json'), 'utf8')) as { contentHash?: unknown };
    if (manifest.contentHash !== contentHash) return undefined;
    const rootfsDir = join(entryDir, 'rootfs');
    if (!(await stat(rootfsDir)).isDirectory()) return undefined;
    return { rootfsDir, contentHash, cached: true };
  } catch {
    return undefined;
  }
}

/** Removes `<entryName>.tmp-*` directories left by a build that crashed. Call with the entry's lock held. */
async function removeStaleBuilds(templatesDir: string, entryName: string): Promise<void> {
  const names = await readdir(templatesDir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(`${entryName}.tmp-`)) await removeTree(join(templatesDir, name));
  }
}

/**
 * Deletes a directory tree after detaching anything still mounted under it
 * (mmdebstrap runs in its own mount namespace, so nothing should be; this guards
 * against deleting through a leftover bind mount of /dev or /proc).
 */
async function removeTree(dir: string): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const mounts = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mountPoint): mountPoint is string => mountPoint !== undefined)
    .map((mountPoint) =>
      mountPoint.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8))),
    )
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mounts) await run('umount', ['--lazy', mountPoint]);
  await rm(dir, { recursive: true, force: true });
}

interface BuildContext extends EnsureTemplateRootfsOptions {
  readonly aptSources: readonly string[];
  readonly contentHash: string;
  readonly entryDir: string;
  readonly emit: (line: string) => void;
}

async function buildEntry(spec: TemplateRootfsSpec, ctx: BuildContext): Promise<TemplateRootfs> {
  const { emit, signal } = ctx;
  const startedAt = Date.now();
  const aptCacheDir = join(ctx.cacheDir, 'apt');
  await mkdir(aptCacheDir, { recursive: true });
  const tmpDir = await mkdtemp(`${ctx.entryDir}.tmp-`);
  try {
    const rootfs = join(tmpDir, 'rootfs');
    await mkdir(rootfs, { mode: 0o755 });
    await chmod(rootfs, 0o755);

    // Packages already downloaded by earlier builds: mmdebstrap and apt skip
    // downloading any .deb already present in /var/cache/apt/archives.
    const archives = join(rootfs, 'var/cache/apt/archives');
    await mkdir(join(archives, 'partial'), { recursive: true, mode: 0o755 });
    const seeded = await transferDebs(aptCacheDir, archives, 'link');
    emit(`apt cache: ${seeded} packages available locally`);

    await runMmdebstrap(spec, rootfs, ctx);
    signal?.throwIfAborted();

    emit('moving downloaded packages to the apt cache');
    const harvested = await transferDebs(archives, aptCacheDir, 'move');
    emit(`apt cache: ${harvested} packages added`);
    await cleanAptCache(rootfs);

    emit('removing docs, man pages and translations');
    await pruneDocs(rootfs);

    emit(`adding ${ARCHIVED_LOCALE} to /usr/lib/locale/locale-archive`);
    await archiveLocale(rootfs);

    emit(`creating ${spec.workdir}, ${MOUNT_POINTS.join(', ')} and /etc/{hosts,hostname,resolv.conf}`);
    await prepareRuntimeFiles(rootfs, spec.workdir);

    emit(`shifting ownership by ${SANDBOX_ID_SHIFT}`);
    const shiftStart = Date.now();
    const { entries } = await shiftOwnership(rootfs);
    emit(`shifted ${entries} entries in ${((Date.now() - shiftStart) / 1000).toFixed(1)} s`);
    signal?.throwIfAborted();

    const manifest = {
      name: spec.name,
      contentHash: ctx.contentHash,
      recipeVersion: BUILDER_RECIPE_VERSION,
      rootfs: spec.rootfs,
      workdir: spec.workdir,
      aptSources: ctx.aptSources,
      architecture: hostDpkgArchitecture(),
      idShift: SANDBOX_ID_SHIFT,
      builtAt: new Date().toISOString(),
      buildDurationMs: Date.now() - startedAt,
      installedPackages: await installedPackages(rootfs),
    };
    await writeFile(join(tmpDir, 'template.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    await chmod(tmpDir, 0o755);
    await rename(tmpDir, ctx.entryDir);
    return { rootfsDir: join(ctx.entryDir, 'rootfs'), contentHash: ctx.contentHash, cached: false };
  } catch (err) {
    // Keep what was downloaded (apt only puts complete, verified files in archives/).
    await transferDebs(join(tmpDir, 'rootfs/var/cache/apt/archives'), aptCacheDir, 'move').catch(() => 0);
    await removeTree(tmpDir);
    throw err;
  }
}

function mmdebstrapArgs(spec: TemplateRootfsSpec, rootfs: string, aptSources: readonly string[]): string[] {
  const args = [
    // Root mode: the files get their real owners (the caller runs as root),
    // and the wrapper in runMmdebstrap already gives mmdebstrap private mount
    // and pid namespaces.
    '--mode=root',
    `--variant=${spec.rootfs.variant}`,
    `--architectures=${hostDpkgArchitecture()}`,
    '--format=directory',
    '--verbose',
    ...APT_OPTIONS.map((option) => `--aptopt=${option}`),
    // The target holds the seeded apt cache, so it is not empty.
    '--skip=check/empty',
    // Keep every downloaded .deb (essential ones included) so it can be moved
    // to the apt cache; the builder empties /var/cache/apt itself afterwards.
    '--skip=essential/unlink',
    '--skip=cleanup/apt/cache',
  ];
  if (spec.rootfs.packages.length > 0) args.push(`--include=${spec.rootfs.packages.join(',')}`);
  args.push('--', spec.rootfs.suite, rootfs, ...aptSources);
  return args;
}

async function runMmdebstrap(spec: TemplateRootfsSpec, rootfs: string, ctx: BuildContext): Promise<void> {
  const args = mmdebstrapArgs(spec, rootfs, ctx.aptSources);
  ctx.emit(`mmdebstrap ${args.join(' ')}`);
  const tail: string[] = [];
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    ctx.emit(line);
  };
  // setpriv: the wrapper gets SIGKILL if this process dies. unshare --kill-child:
  // mmdebstrap runs as init of a fresh pid namespace that is SIGKILLed when
  // the wrapper dies, so a crash or an abort never leaves mmdebstrap, apt or
  // dpkg running (mmdebstrap itself ignores SIGTERM while it waits for its
  // workers). The mount namespace keeps every mount of the build private.
  const wrapper = [
    '--pdeathsig',
    'KILL',
    '--',
    'unshare',
    '--mount',
    '--propagation',
    'private',
    '--pid',
    '--mount-proc',
    '--kill-child=SIGKILL',
    '--',
    'mmdebstrap',
  ];
  const child = spawn('setpriv', [...wrapper, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' },
  });
  forwardLines(child, onLine);
  const exitCode = await waitForExit(child, ctx.signal);
  ctx.signal?.throwIfAborted();
  if (exitCode !== 0) {
    throw new TemplateBuildError(spec.name, `mmdebstrap failed with exit code ${exitCode} building ${spec.name}`, {
      exitCode,
      logTail: tail,
    });
  }
}

/** Calls `onLine` for every line (split on `\n` or `\r`) the child writes to stdout or stderr. */
function forwardLines(child: ChildProcess, onLine: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let buffered = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split(/\r\n|\r|\n/);
      buffered = parts.pop() ?? '';
      for (const part of parts) if (part.trim() !== '') onLine(part);
    });
    stream.on('end', () => {
      if (buffered.trim() !== '') onLine(buffered);
      buffered = '';
    });
  }
}

/** Resolves with the exit code (`null` if killed by a signal). On abort, sends SIGKILL and waits for exit. */
function waitForExit(child: ChildProcess, signal: AbortSignal | undefined): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const onAbort = () => child.kill('SIGKILL');
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      resolve(code);
    });
  });
}

/** Runs a command with an argument array; rejects with its stderr if it fails. */
function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}: ${stderr.trim()}`)),
    );
  });
}

/**
 * Puts every `.deb` of `fromDir` into `toDir`: `link` hard-links (copies across
 * filesystems) and keeps the source, `move` renames (copies across filesystems)
 * and removes the source. Files already in `toDir` are kept as they are.
 * Writes go to a temporary name first, so `toDir` never holds a partial `.deb`.
 *
 * @returns the number of files added to `toDir`.
 */
async function transferDebs(fromDir: string, toDir: string, mode: 'link' | 'move'): Promise<number> {
  const names = (await readdir(fromDir).catch(() => [] as string[])).filter((n) => n.endsWith('.deb'));
  const present = new Set(await readdir(toDir).catch(() => [] as string[]));
  let added = 0;
  for (const name of names) {
    const from = join(fromDir, name);
    const to = join(toDir, name);
    if (!present.has(name)) {
      const tmp = join(toDir, `.${name}.${process.pid}.part`);
      try {
        if (mode === 'move') await rename(from, to);
        else await link(from, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
        try {
          await copyFile(from, tmp);
          await rename(tmp, to);
        } catch (copyErr) {
          await rm(tmp, { force: true });
          throw copyErr;
        }
      }
      added++;
    }
    if (mode === 'move') await unlink(from).catch(() => undefined);
  }
  return added;
}

/** Removes what `apt-get clean` removes: downloaded packages and the binary package caches. */
async function cleanAptCache(rootfs: string): Promise<void> {
  const archives = join(rootfs, 'var/cache/apt/archives');
  for (const name of await readdir(archives).catch(() => [] as string[])) {
    if (name.endsWith('.deb')) await unlink(join(archives, name));
  }
  const partial = join(archives, 'partial');
  for (const name of await readdir(partial).catch(() => [] as string[])) {
    await rm(join(partial, name), { recursive: true, force: true });
  }
  const aptCache = join(rootfs, 'var/cache/apt');
  for (const name of await readdir(aptCache).catch(() => [] as string[])) {
    if (name.endsWith('.bin')) await unlink(join(aptCache, name));
  }
}

/**
 * Removes what `DPKG_PATH_FILTERS` excludes (man and info pages, lintian
 * overrides, translations except `locale.alias`, docs except copyright files)
 * and writes those filters to `/etc/dpkg/dpkg.cfg.d/90warren-slim`.
 */
async function pruneDocs(rootfs: string): Promise<void> {
  const share = join(rootfs, 'usr/share');
  for (const dir of ['man', 'info', 'lintian']) await emptyDir(join(share, dir), () => false);
  await emptyDir(join(share, 'locale'), (name) => name === 'locale.alias');
  const docDir = join(share, 'doc');
  for (const entry of await readdir(docDir, { withFileTypes: true }).catch(() => [] as Dirent[])) {
    const path = join(docDir, entry.name);
    if (entry.isDirectory()) await emptyDir(path, (name) => name === 'copyright');
    else await rm(path, { force: true });
  }
  const config = `# Written by Warren's template builder: keep sandbox images slim.\n${DPKG_PATH_FILTERS.join('\n')}\n`;
  await mkdir(join(rootfs, 'etc/dpkg/dpkg.cfg.d'), { recursive: true, mode: 0o755 });
  await writeFile(join(rootfs, 'etc/dpkg/dpkg.cfg.d/90warren-slim'), config, { mode: 0o644 });
}

/** The compiled locale that `LANG=C.UTF-8` (every built-in template's) loads; Debian's libc-bin ships it as a directory. */
const ARCHIVED_LOCALE = '/usr/lib/locale/C.utf8';

/**
 * Adds C.UTF-8 to `/usr/lib/locale/locale-archive` with the rootfs's own `localedef`, so the archive has its
 * glibc's format. glibc looks in the archive first: a process that sets its locale from `LANG` then maps one
 * file instead of opening each category's (bash: ~60 fewer system calls per start). The directory stays, so a
 * later `locale-gen`, which rewrites the archive, leaves C.UTF-8 working.
 */
async function archiveLocale(rootfs: string): Promise<void> {
  await run('chroot', [rootfs, '/usr/bin/localedef', '--add-to-archive', ARCHIVED_LOCALE]);
}

/** Removes every entry of `dir` (if it exists) except those whose name `keep` accepts. */
async function emptyDir(dir: string, keep: (name: string) => boolean): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!keep(name)) await rm(join(dir, name), { recursive: true, force: true });
  }
}

/** Creates the workdir, the runtime's mount points and the plain `/etc` files the runtime binds over. */
async function prepareRuntimeFiles(rootfs: string, workdir: string): Promise<void> {
  for (const dir of [workdir, ...MOUNT_POINTS]) {
    const path = join(rootfs, dir);
    await mkdir(path, { recursive: true, mode: 0o755 });
    await chmod(path, 0o755);
  }
  for (const [path, content] of RUNTIME_ETC_FILES) {
    const target = join(rootfs, path);
    // mmdebstrap copies the host's /etc/hostname and /etc/resolv.conf; replace them, and any symlink.
    await rm(target, { force: true, recursive: true });
    await writeFile(target, content, { mode: 0o644 });
    await chmod(target, 0o644);
  }
}

/** `name=version` of every package dpkg lists as installed in the rootfs. */
async function installedPackages(rootfs: string): Promise<string[]> {
  const status = await readFile(join(rootfs, 'var/lib/dpkg/status'), 'utf8').catch(() => '');
  const packages: string[] = [];
  for (const paragraph of status.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(paragraph)?.[1];
    const version = /^Version: (.+)$/m.exec(paragraph)?.[1];
    const state = /^Status: (.+)$/m.exec(paragraph)?.[1];
    if (name && version && state?.endsWith(' installed')) packages.push(`${name}=${version}`);
  }
  return packages.sort();
}
