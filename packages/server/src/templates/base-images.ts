/**
 * What a build's `from_image` names, resolved in this order:
 *
 * 1. an existing Warren template (its layers, env and workdir);
 * 2. an image archive on the server (`oci:`, `oci-archive:`, `docker-archive:`,
 *    read only inside the configured import directory);
 * 3. an OCI image pulled from a registry (an explicit `host[:port]/…`
 *    reference, or a short name when a default registry is configured);
 * 4. when no registry is configured or reachable, a documented Debian-built
 *    equivalent of a common name (`DEBIAN_EQUIVALENTS`), built with mmdebstrap.
 *
 * A name that matches none of these fails with a message saying so; nothing
 * is ever silently substituted.
 */

import { chmod, copyFile, cp, mkdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TemplateRow } from '../store/store.ts';
import { ensureTemplateRootfs, shiftOwnership } from './builder.ts';
import type { DebianRootfsRecipe } from './builtin.ts';
import { LayerCache, layerKey } from './layers.ts';
import {
  ImageError,
  ImageErrorCode,
  type ImageOptions,
  importImageArchive,
  type MaterializedImage,
  parseImageReference,
  pullImage,
} from './oci.ts';

/** A resolved base: its layers (top first) and the image metadata the build starts from. */
export interface BaseImage {
  layers: string[];
  /** Cache key of the base: every layer key of a build derives from it. */
  key: string;
  env: Record<string, string>;
  workdir: string | null;
  user: string | null;
  /** Main language, for the template listing. */
  language: string;
  features: string[];
  /** What it was resolved to, for the build log. */
  description: string;
}

export class BaseImageError extends Error {}

const DEBIAN_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
});

const DEBIAN_BASE_PACKAGES = ['bash', 'coreutils', 'ca-certificates', 'procps'] as const;

interface DebianEquivalent {
  /** Names it stands for (tags included). */
  names: readonly string[];
  /** Cache entry name of the rootfs. */
  entry: string;
  packages: readonly string[];
  env: Readonly<Record<string, string>>;
  language: string;
  features: readonly string[];
  /** Adds the host's own Node.js of this major version (node and npm) on top; Debian 12 ships only Node.js 18. */
  hostNode?: number;
}

/**
 * Debian 12 (bookworm) builds standing in for common registry images when no
 * registry is reachable. Each gives the same major versions as the image it
 * names (bookworm ships Python 3.11 and Node.js 18); other names have none.
 */
export const DEBIAN_EQUIVALENTS: readonly DebianEquivalent[] = Object.freeze([
  {
    names: ['debian:bookworm', 'debian:12', 'debian:bookworm-slim', 'debian:12-slim'],
    entry: 'image-debian-12',
    packages: DEBIAN_BASE_PACKAGES,
    env: DEBIAN_ENV,
    language: 'bash',
    features: ['bash'],
  },
  {
    names: [
      'python:3.11',
      'python:3.11-slim',
      'python:3.11-bookworm',
      'python:3.11-slim-bookworm',
      'python:3-bookworm',
      'python:3-slim-bookworm',
    ],
    entry: 'image-python-3.11',
    packages: [...DEBIAN_BASE_PACKAGES, 'python3', 'python3-pip', 'python3-venv', 'python-is-python3'],
    env: { ...DEBIAN_ENV, PYTHONUNBUFFERED: '1', PIP_BREAK_SYSTEM_PACKAGES: '1' },
    language: 'python',
    features: ['bash', 'python'],
  },
  {
    names: ['node:20', 'node:20-slim', 'node:20-bookworm', 'node:20-bookworm-slim', 'ubuntu/node:20-22.04_edge'],
    entry: 'image-debian-12',
    packages: DEBIAN_BASE_PACKAGES,
    env: DEBIAN_ENV,
    language: 'javascript',
    features: ['bash', 'javascript'],
    hostNode: 20,
  },
  {
    names: ['node:18', 'node:18-slim', 'node:18-bookworm', 'node:18-bookworm-slim'],
    entry: 'image-node-18',
    packages: [...DEBIAN_BASE_PACKAGES, 'nodejs', 'npm'],
    env: DEBIAN_ENV,
    language: 'javascript',
    features: ['bash', 'javascript'],
  },
]);

/** The Debian equivalent of an image name, if Warren documents one. */
export function debianEquivalent(name: string): DebianEquivalent | undefined {
  const normalized = name.replace(/^(docker\.io\/)?(library\/)?/, '');
  return DEBIAN_EQUIVALENTS.find((d) => d.names.includes(normalized));
}

/** The server's own Node.js (this process's binary) and npm, as a layer under /usr/local, cached by version. */
async function hostNodeLayer(
  major: number,
  cacheDir: string,
  parentKey: string,
  onLog: (line: string) => void,
): Promise<{ dir: string; key: string }> {
  const version = process.versions.node;
  if (Number(version.split('.')[0]) !== major) {
    throw new BaseImageError(
      `node:${major} needs Node.js ${major} on the server to copy in (Debian 12 ships only Node.js 18); this server runs ${version}`,
    );
  }
  const npmDir = join(dirname(dirname(process.execPath)), 'lib', 'node_modules', 'npm');
  const npmVersion = await readFile(join(npmDir, 'package.json'), 'utf8')
    .then((t) => (JSON.parse(t) as { version?: string }).version ?? null)
    .catch(() => null);
  const key = layerKey(parentKey, { kind: 'host-node', version, npm: npmVersion });
  const cache = new LayerCache(cacheDir);
  if (await cache.has(key)) return { dir: cache.path(key), key };
  onLog(`adding the server's Node.js ${version}${npmVersion ? ` and npm ${npmVersion}` : ''} under /usr/local`);
  const dir = await cache.create(key, { step: `host Node.js ${version}` }, async (layer) => {
    await mkdir(join(layer, 'usr/local/bin'), { recursive: true });
    await mkdir(join(layer, 'usr/local/lib/node_modules'), { recursive: true });
    await copyFile(process.execPath, join(layer, 'usr/local/bin/node'));
    await chmod(join(layer, 'usr/local/bin/node'), 0o755);
    if (npmVersion) {
      await cp(npmDir, join(layer, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
      await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(layer, 'usr/local/bin/npm'));
      await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(layer, 'usr/local/bin/npx'));
    }
    await shiftOwnership(layer);
    return undefined;
  });
  return { dir, key };
}

function envFromList(list: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq > 0) env[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return env;
}

function baseFromImage(image: MaterializedImage, what: string): BaseImage {
  return {
    layers: [image.rootfs],
    key: `oci:${image.digest}`,
    env: envFromList(image.config.env),
    workdir: image.config.workingDir || null,
    user: image.config.user || null,
    language: 'bash',
    features: ['bash'],
    description: `${what} ${image.source} (${image.digest}${image.cached ? ', cached' : ''})`,
  };
}

export interface ResolveBaseOptions {
  findTemplate: (name: string) => TemplateRow | undefined;
  /** Registries (as written in references) builds may pull from; undefined = any. */
  allowedRegistries?: readonly string[] | undefined;
  cacheDir: string;
  image: ImageOptions;
  onLog: (line: string) => void;
  signal: AbortSignal;
}

const ARCHIVE_PREFIX = /^(oci|oci-archive|docker-archive):/;

/**
 * Resolves `from_image` to a base (see the module comment for the order).
 * @throws BaseImageError with a message for the build log.
 */
export async function resolveBaseImage(fromImage: string, o: ResolveBaseOptions): Promise<BaseImage> {
  const template = o.findTemplate(fromImage);
  if (template) {
    if (template.status !== 'active' || template.rootfsDir === null) {
      throw new BaseImageError(`template ${template.name} is not active (status ${template.status})`);
    }
    return {
      layers: template.rootfsDir.split(':'),
      key: `template:${template.contentHash ?? template.rootfsDir}`,
      env: { ...template.env },
      workdir: template.workdir,
      user: template.userName,
      language: template.language,
      features: [...template.features],
      description: `Warren template ${template.name}`,
    };
  }

  const imageOptions: ImageOptions = { ...o.image, signal: o.signal, onLog: o.onLog };
  if (ARCHIVE_PREFIX.test(fromImage)) {
    try {
      return baseFromImage(await importImageArchive(fromImage, imageOptions), 'image archive');
    } catch (err) {
      throw asBaseError(err);
    }
  }

  const equivalent = debianEquivalent(fromImage);
  const ref = parseImageReference(fromImage, o.image.defaultRegistry ?? null);
  if (ref && o.allowedRegistries && !o.allowedRegistries.includes(ref.registry)) {
    throw new BaseImageError(
      `registry ${ref.registry} is not allowed on this server (WARREN_IMAGE_REGISTRIES: ${o.allowedRegistries.join(', ')})`,
    );
  }
  if (ref) {
    try {
      return baseFromImage(await pullImage(fromImage, imageOptions), 'registry image');
    } catch (err) {
      // Only an unreachable registry falls back; a missing image or bad credentials never do.
      if (!(err instanceof ImageError && err.code === ImageErrorCode.UNREACHABLE && equivalent)) throw asBaseError(err);
      o.onLog(`registry unreachable (${err.message}); using Warren's Debian-built equivalent of ${fromImage}`);
    }
  }
  if (!equivalent) {
    throw new BaseImageError(
      `cannot resolve base image '${fromImage}': it is not a Warren template, ` +
        (ref ? 'the registry could not provide it, ' : 'no registry is configured for short names, ') +
        `and Warren has no Debian-built equivalent of it (equivalents: ${DEBIAN_EQUIVALENTS.flatMap((d) => d.names).join(', ')})`,
    );
  }
  o.onLog(`using Warren's Debian-built equivalent of ${fromImage}: Debian 12 with ${equivalent.packages.join(' ')}`);
  const recipe: DebianRootfsRecipe = {
    kind: 'debian',
    suite: 'bookworm',
    variant: 'apt',
    packages: equivalent.packages,
  };
  const built = await ensureTemplateRootfs(
    { name: equivalent.entry, rootfs: recipe, workdir: '/workspace' },
    { cacheDir: o.cacheDir, onProgress: o.onLog, signal: o.signal },
  );
  const layers = [built.rootfsDir];
  let key = `debian:${built.contentHash}`;
  if (equivalent.hostNode !== undefined) {
    const node = await hostNodeLayer(equivalent.hostNode, o.cacheDir, key, o.onLog);
    layers.unshift(node.dir);
    key = node.key;
  }
  return {
    layers,
    key,
    env: { ...equivalent.env },
    workdir: null,
    user: null,
    language: equivalent.language,
    features: [...equivalent.features],
    description: `Debian-built equivalent of ${fromImage}`,
  };
}

function asBaseError(err: unknown): Error {
  if (err instanceof ImageError) return new BaseImageError(err.message);
  return err as Error;
}
