/**
 * The runtime bundle: a directory bind-mounted read-only at `/.warren` in every
 * sandbox, holding what the agent needs to run in any root filesystem without
 * using the template's libc or node:
 *
 * ```
 * bin/node          the host's node, patched to load its libraries from /.warren/lib
 * bin/warren-init   static PID 1 (packages/server/native/warren-init.c)
 * bin/warren-pty    static PTY helper of the agent's /terminal (packages/server/native/warren-pty.c)
 * bin/warren-exec   static helper the agent starts its children with (packages/server/native/warren-exec.c)
 * lib/              node's shared libraries and the dynamic loader, copied from the host
 * agent/boot.cjs    the agent's entry: runs agent.cjs with its code cache
 * agent/agent.cjs   the agent bundle
 * agent/agent.cjs.cache   V8 code cache of agent.cjs, recorded here with bin/node
 * agent/kernel_bridge.py  the agent's Jupyter kernel bridge
 * manifest.json     what went in (written last; its presence marks a complete bundle)
 * ```
 *
 * Bundles live under `${cacheDir}/runtime/<hash16>`, built in a temporary
 * directory and renamed into place.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the bundle is mounted inside a sandbox; compiled into `bin/node`'s interpreter and rpath. */
export const RUNTIME_BUNDLE_MOUNT = '/.warren';

/**
 * Version of the bundle recipe (layout, patchelf and gcc flags). Part of the
 * hash: bump it whenever a change here changes the bundle's content.
 */
export const RUNTIME_BUNDLE_RECIPE_VERSION = 4;

/** The init source shipped with the server package. */
const DEFAULT_INIT_SOURCE = fileURLToPath(new URL('../../native/warren-init.c', import.meta.url));
/** The PTY helper source shipped with the server package. */
const PTY_SOURCE = fileURLToPath(new URL('../../native/warren-pty.c', import.meta.url));
/** The exec helper source shipped with the server package. */
const EXEC_SOURCE = fileURLToPath(new URL('../../native/warren-exec.c', import.meta.url));
/** Name of the agent's kernel bridge script, expected beside the agent bundle. */
const KERNEL_BRIDGE_NAME = 'kernel_bridge.py';
/** Name of the agent's entry (packages/agent/src/boot.ts), expected beside the agent bundle. */
const AGENT_BOOT_NAME = 'boot.cjs';
/** The agent bundle's name in the runtime bundle; boot.cjs runs it. */
const AGENT_NAME = 'agent.cjs';
/** How long recording the agent's code cache may take before the bundle ships without one. */
const CODE_CACHE_RECORD_TIMEOUT_MS = 60_000;

/** What a sandbox runs: the static init, the bundled node and the agent's entry. */
export const AGENT_COMMAND: readonly string[] = [
  `${RUNTIME_BUNDLE_MOUNT}/bin/warren-init`,
  `${RUNTIME_BUNDLE_MOUNT}/bin/node`,
  `${RUNTIME_BUNDLE_MOUNT}/agent/${AGENT_BOOT_NAME}`,
];

const GCC_FLAGS = ['-static', '-O2', '-Wall', '-Wextra', '-s'] as const;

/** Options of `ensureRuntimeBundle`. */
export interface EnsureRuntimeBundleOptions {
  /** Root of Warren's on-disk cache. */
  readonly cacheDir: string;
  /**
   * The agent bundle (`packages/agent/dist/agent.cjs`), copied to `agent/agent.cjs`; its entry `boot.cjs`
   * must be beside it, `kernel_bridge.py` may be.
   */
  readonly agentBundlePath: string;
  /** Receives one line per build step, for a person to read. */
  readonly onProgress?: (line: string) => void;
  /** The node binary to ship. @default process.execPath */
  readonly nodePath?: string;
  /** Source of the init binary. @default packages/server/native/warren-init.c */
  readonly initSourcePath?: string;
}

/** A complete runtime bundle. */
export interface RuntimeBundle {
  /** Absolute path of the bundle directory, to bind-mount read-only at `RUNTIME_BUNDLE_MOUNT`. */
  readonly dir: string;
  /** sha256 (hex) of the bundle's inputs, see `ensureRuntimeBundle`. */
  readonly hash: string;
  /** `true` when the bundle was already there, `false` when this call built it. */
  readonly cached: boolean;
}

const inflight = new Map<string, Promise<RuntimeBundle>>();

/**
 * Returns the runtime bundle for the current node binary, agent bundle and init
 * source, building it first if it is not cached.
 *
 * The hash covers: the recipe version; the node binary by identity, not content
 * (real path, device, inode, size and mtime in ns; reading ~100 MB on every
 * call would cost ~0.3 s, and upgrading node replaces the file, which changes
 * these); the agent bundle, its entry and the C sources (init, pty, exec) by sha256 of their content; the
 * architecture. The copied shared libraries are not part of it: a bundle is
 * self-consistent with the libraries it was built with, whatever the host has
 * since installed.
 *
 * Idempotent and safe to call concurrently from several processes: each builds
 * into its own temporary directory and the first rename wins.
 *
 * @example
 * const bundle = await ensureRuntimeBundle({
 *   cacheDir: '/var/lib/warren/cache',
 *   agentBundlePath: 'packages/agent/dist/agent.mjs',
 *   onProgress: (line) => console.error(line),
 * });
 * // mount bundle.dir read-only at /.warren; run /.warren/bin/warren-init /.warren/bin/node /.warren/agent/agent.mjs
 * @throws Error when the agent bundle is missing, or patchelf, ldd or gcc fail.
 */
export async function ensureRuntimeBundle(options: EnsureRuntimeBundleOptions): Promise<RuntimeBundle> {
  const nodePath = await realpath(options.nodePath ?? process.execPath);
  const initSourcePath = options.initSourcePath ?? DEFAULT_INIT_SOURCE;
  const agent = await readFile(options.agentBundlePath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      throw new Error(`agent bundle not found at ${options.agentBundlePath}; build it with \`npm run build:agent\``);
    }
    throw err;
  });
  const bootPath = join(dirname(options.agentBundlePath), AGENT_BOOT_NAME);
  const agentBoot = await readFile(bootPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT')
      throw new Error(`agent entry not found at ${bootPath}; build it with \`npm run build:agent\``);
    throw err;
  });
  const initSource = await readFile(initSourcePath);
  const ptySource = await readFile(PTY_SOURCE);
  const execSource = await readFile(EXEC_SOURCE);
  const kernelBridge = await readFile(join(dirname(options.agentBundlePath), KERNEL_BRIDGE_NAME)).catch(
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  const nodeStat = await stat(nodePath, { bigint: true });
  const hash = sha256(
    JSON.stringify({
      recipe: RUNTIME_BUNDLE_RECIPE_VERSION,
      arch: process.arch,
      node: {
        path: nodePath,
        dev: nodeStat.dev.toString(),
        ino: nodeStat.ino.toString(),
        size: nodeStat.size.toString(),
        mtimeNs: nodeStat.mtimeNs.toString(),
      },
      agentSha256: sha256(agent),
      agentBootSha256: sha256(agentBoot),
      initSha256: sha256(initSource),
      ptySha256: sha256(ptySource),
      execSha256: sha256(execSource),
      kernelBridgeSha256: kernelBridge ? sha256(kernelBridge) : null,
    }),
  );
  const runtimeDir = join(options.cacheDir, 'runtime');
  const dir = join(runtimeDir, hash.slice(0, 16));
  if (await isComplete(dir)) {
    await markUsedAndPrune(runtimeDir, dir);
    return { dir, hash, cached: true };
  }

  const running = inflight.get(dir);
  if (running) return running;
  const progress = (line: string) => {
    try {
      options.onProgress?.(line);
    } catch {
      // A failing progress callback must not break the build.
    }
  };
  const build = buildBundle({
    dir,
    hash,
    runtimeDir,
    nodePath,
    agent,
    agentBoot,
    kernelBridge,
    initSourcePath,
    progress,
  })
    .then(async (bundle) => {
      await markUsedAndPrune(runtimeDir, bundle.dir);
      return bundle;
    })
    .finally(() => inflight.delete(dir));
  inflight.set(dir, build);
  return build;
}

/** Bundles kept whatever their age: the one in use and the most recently used others. */
export const RUNTIME_BUNDLES_KEPT = 4;
/** Older bundles (by last use) than this are removed, beyond the kept ones. */
export const RUNTIME_BUNDLE_MAX_AGE_MS = 24 * 3600_000;
/** A build's temporary directory older than this was left by a process that died mid-build. */
const STALE_BUILD_MS = 3600_000;

/**
 * Marks `inUse` as used now (its mtime) and removes old bundles: each agent
 * change makes a new ~100 MB bundle, so without this the cache grows with
 * every version ever run. The {@link RUNTIME_BUNDLES_KEPT} most recently used
 * stay (sandboxes booted by an older server keep their bundle mounted, and a
 * rollback finds it), as does anything used within
 * {@link RUNTIME_BUNDLE_MAX_AGE_MS}; abandoned temporary build directories go.
 * Never throws: pruning is housekeeping.
 */
export async function markUsedAndPrune(runtimeDir: string, inUse: string, nowMs = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  try {
    const now = new Date(nowMs);
    await utimes(inUse, now, now);
    const entries = await readdir(runtimeDir, { withFileTypes: true });
    const bundles: Array<{ path: string; usedMs: number }> = [];
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const path = join(runtimeDir, e.name);
      const usedMs = (await stat(path).catch(() => undefined))?.mtimeMs;
      if (usedMs === undefined) continue;
      if (e.name.startsWith('.tmp-')) {
        if (nowMs - usedMs > STALE_BUILD_MS) bundles.push({ path, usedMs: Number.NEGATIVE_INFINITY });
      } else if (/^[0-9a-f]{16}$/.test(e.name)) {
        bundles.push({ path, usedMs });
      }
    }
    bundles.sort((a, b) => b.usedMs - a.usedMs);
    let kept = 0;
    for (const b of bundles) {
      const keep =
        b.path === inUse ||
        (b.usedMs !== Number.NEGATIVE_INFINITY &&
          (kept < RUNTIME_BUNDLES_KEPT || nowMs - b.usedMs <= RUNTIME_BUNDLE_MAX_AGE_MS));
      if (keep) {
        kept++;
        continue;
      }
      await rm(b.path, { recursive: true, force: true });
      removed.push(b.path);
    }
  } catch {
    // a cache we cannot tidy still works
  }
  return removed;
}

async function isComplete(dir: string): Promise<boolean> {
  return stat(join(dir, 'manifest.json')).then(
    (st) => st.isFile(),
    () => false,
  );
}

interface BuildInputs {
  readonly dir: string;
  readonly hash: string;
  readonly runtimeDir: string;
  readonly nodePath: string;
  readonly agent: Buffer;
  /** The agent's entry, boot.cjs. */
  readonly agentBoot: Buffer;
  /** kernel_bridge.py, when it was found beside the agent bundle. */
  readonly kernelBridge: Buffer | undefined;
  readonly initSourcePath: string;
  readonly progress: (line: string) => void;
}

async function buildBundle(inputs: BuildInputs): Promise<RuntimeBundle> {
  const { dir, hash, nodePath, progress } = inputs;
  const startedAt = Date.now();
  await mkdir(inputs.runtimeDir, { recursive: true });
  const tmp = await mkdtemp(join(inputs.runtimeDir, `.tmp-${hash.slice(0, 16)}-`));
  try {
    for (const sub of ['bin', 'lib', 'agent']) await mkdir(join(tmp, sub), { mode: 0o755 });

    progress(`runtime bundle: collecting the shared libraries of ${nodePath}`);
    const interpreter = await elfInterpreter(nodePath);
    const libraries = interpreter ? await sharedLibraries(nodePath) : [];
    for (const lib of libraries) await copyExecutable(lib.path, join(tmp, 'lib', lib.name));
    if (interpreter) await copyExecutable(interpreter, join(tmp, 'lib', basename(interpreter)));

    const nodeSizeMiB = (await stat(nodePath)).size / 2 ** 20;
    progress(
      `runtime bundle: copying node (${nodeSizeMiB.toFixed(0)} MiB) and patching it to use ${RUNTIME_BUNDLE_MOUNT}/lib`,
    );
    const bundledNode = join(tmp, 'bin/node');
    await copyExecutable(nodePath, bundledNode);
    if (interpreter) {
      const libDir = `${RUNTIME_BUNDLE_MOUNT}/lib`;
      // DT_RPATH rather than DT_RUNPATH: it applies to the libraries' own
      // dependencies too and wins over LD_LIBRARY_PATH set inside a sandbox.
      await run('patchelf', [
        '--set-interpreter',
        `${libDir}/${basename(interpreter)}`,
        '--force-rpath',
        '--set-rpath',
        libDir,
        bundledNode,
      ]);
      // Run it once through the bundled loader: proves the copied libraries are enough.
      const loader = join(tmp, 'lib', basename(interpreter));
      await run(loader, ['--library-path', join(tmp, 'lib'), bundledNode, '-e', '0']);
    }

    progress('runtime bundle: compiling warren-init (static)');
    await run('gcc', [...GCC_FLAGS, '-o', join(tmp, 'bin/warren-init'), inputs.initSourcePath]);
    await chmod(join(tmp, 'bin/warren-init'), 0o755);
    progress('runtime bundle: compiling warren-pty (static)');
    await run('gcc', [...GCC_FLAGS, '-o', join(tmp, 'bin/warren-pty'), PTY_SOURCE]);
    await chmod(join(tmp, 'bin/warren-pty'), 0o755);
    progress('runtime bundle: compiling warren-exec (static)');
    await run('gcc', [...GCC_FLAGS, '-o', join(tmp, 'bin/warren-exec'), EXEC_SOURCE]);
    await chmod(join(tmp, 'bin/warren-exec'), 0o755);

    for (const [name, content] of [
      [AGENT_NAME, inputs.agent],
      [AGENT_BOOT_NAME, inputs.agentBoot],
    ] as const) {
      await writeFile(join(tmp, 'agent', name), content, { mode: 0o644 });
      await chmod(join(tmp, 'agent', name), 0o644);
    }
    if (inputs.kernelBridge) {
      await writeFile(join(tmp, 'agent', KERNEL_BRIDGE_NAME), inputs.kernelBridge, { mode: 0o644 });
      await chmod(join(tmp, 'agent', KERNEL_BRIDGE_NAME), 0o644);
    } else {
      progress(`runtime bundle: no ${KERNEL_BRIDGE_NAME} beside the agent bundle; python will run without a kernel`);
    }

    progress('runtime bundle: recording the agent code cache with the bundled node');
    const nodeCommand = interpreter
      ? [join(tmp, 'lib', basename(interpreter)), '--library-path', join(tmp, 'lib'), bundledNode]
      : [bundledNode];
    const codeCache = await recordCodeCache(nodeCommand, join(tmp, 'agent'));
    if (codeCache.bytes === null) {
      progress(
        `runtime bundle: no agent code cache (${codeCache.error}); the agent compiles from source at every start`,
      );
    }

    const manifest = {
      hash,
      recipeVersion: RUNTIME_BUNDLE_RECIPE_VERSION,
      mount: RUNTIME_BUNDLE_MOUNT,
      node: { source: nodePath, version: await nodeVersion(nodePath) },
      interpreter: interpreter ? basename(interpreter) : null,
      libraries: libraries.map((lib) => ({ name: lib.name, source: lib.path })),
      agentSha256: sha256(inputs.agent),
      agentCodeCacheBytes: codeCache.bytes,
      kernelBridgeSha256: inputs.kernelBridge ? sha256(inputs.kernelBridge) : null,
      builtAt: new Date().toISOString(),
      buildDurationMs: Date.now() - startedAt,
    };
    await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
    await chmod(tmp, 0o755);
    try {
      await rename(tmp, dir);
    } catch (err) {
      // Another process finished the same bundle first: use theirs.
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isComplete(dir))) throw err;
      await rm(tmp, { recursive: true, force: true });
      return { dir, hash, cached: true };
    }
    progress(`runtime bundle: ready at ${dir} (${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
    return { dir, hash, cached: false };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Runs the agent once through its entry with `nodeCommand` (the bundled node)
 * so that the entry writes the V8 code cache of agent.cjs beside it (see
 * packages/agent/src/boot.ts). The agent listens on a socket in a temporary
 * directory and starts nothing; the environment is explicit so no
 * NODE_OPTIONS of the server's changes V8's flags (a cache only fits the flags
 * it was made with). Returns the cache's size, or why there is none.
 */
async function recordCodeCache(
  nodeCommand: readonly string[],
  agentDir: string,
): Promise<{ bytes: number; error?: undefined } | { bytes: null; error: string }> {
  const work = await mkdtemp(join(tmpdir(), 'warren-code-cache-'));
  const cacheFile = join(agentDir, `${AGENT_NAME}.cache`);
  try {
    const [command, ...args] = nodeCommand;
    const child = spawn(command!, [...args, join(agentDir, AGENT_BOOT_NAME)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        WARREN_AGENT_CODE_CACHE_RECORD: cacheFile,
        WARREN_SANDBOX_ID: 'code-cache',
        WARREN_AGENT_TOKEN_KEY: '00',
        WARREN_AGENT_SOCKET: join(work, 'agent.sock'),
        WARREN_AGENT_WORKDIR: join(work, 'workspace'),
        WARREN_AGENT_FILE_ROOTS: work,
      },
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-2000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), CODE_CACHE_RECORD_TIMEOUT_MS);
    const code = await new Promise<number | string>((resolve) => {
      child.on('error', (err) => resolve(err.message));
      child.on('close', (exitCode, signal) => resolve(exitCode ?? String(signal)));
    }).finally(() => clearTimeout(timer));
    if (code !== 0) {
      await rm(cacheFile, { force: true });
      return { bytes: null, error: `recorder exited with ${code}: ${output.trim().split('\n').at(-1) ?? ''}` };
    }
    await chmod(cacheFile, 0o644);
    return { bytes: (await stat(cacheFile)).size };
  } catch (err) {
    await rm(cacheFile, { force: true });
    return { bytes: null, error: (err as Error).message };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The ELF interpreter of a dynamically linked executable, or `undefined` for a static one. */
async function elfInterpreter(binary: string): Promise<string | undefined> {
  const { code, stdout, stderr } = await capture('patchelf', ['--print-interpreter', binary]);
  if (code === 0) return stdout.trim() || undefined;
  if (/no \.?interp|cannot find section/i.test(stderr)) return undefined;
  throw new Error(`patchelf --print-interpreter ${binary} failed: ${stderr.trim()}`);
}

/** Every shared library `ldd` resolves for `binary` (transitively), by soname and resolved path. */
async function sharedLibraries(binary: string): Promise<Array<{ name: string; path: string }>> {
  const { code, stdout, stderr } = await capture('ldd', [binary]);
  if (code !== 0) throw new Error(`ldd ${binary} failed: ${stderr.trim()}`);
  const libraries: Array<{ name: string; path: string }> = [];
  for (const line of stdout.split('\n')) {
    const trimmed = line.trim();
    if (trimmed.includes('=> not found')) throw new Error(`${binary}: shared library not found: ${trimmed}`);
    const match = /^(\S+) => (\/\S+) \(0x[0-9a-f]+\)$/.exec(trimmed);
    if (match) libraries.push({ name: match[1]!, path: match[2]! });
  }
  return libraries;
}

/** Copies the content behind `from` (following symlinks) to `to`, mode 0755. */
async function copyExecutable(from: string, to: string): Promise<void> {
  await copyFile(await realpath(from), to);
  await chmod(to, 0o755);
}

async function nodeVersion(nodePath: string): Promise<string> {
  if (nodePath === (await realpath(process.execPath))) return process.version;
  const { stdout } = await capture(nodePath, ['--version']);
  return stdout.trim();
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Runs a command (argument array, no shell) and collects its output. */
function capture(
  command: string,
  args: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new Error(`${command} not found: ${missingToolHint(command)}`));
      else reject(err);
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function run(command: string, args: readonly string[]): Promise<void> {
  const { code, stderr } = await capture(command, args);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed with exit code ${code}: ${stderr.trim()}`);
}

function missingToolHint(command: string): string {
  const packages: Record<string, string> = {
    patchelf: 'install the Debian package patchelf',
    gcc: 'install the Debian packages gcc and libc6-dev',
    ldd: 'install the Debian package libc-bin',
  };
  return packages[command] ?? 'is it installed?';
}
