/**
 * Images stored on the server: an OCI image layout directory (`oci:`), a tar
 * of one (`oci-archive:`), or a `docker save` tar (`docker-archive:`), named
 * with skopeo's transport syntax. Archives are read only from inside the
 * configured archive directory; a tar is indexed by its headers and its
 * members are read by offset, never unpacked to disk.
 */
import { createReadStream } from 'node:fs';
import { open, realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { z } from 'zod';
import { ImageError, ImageErrorCode } from './oci-errors.ts';
import { verifiedBlob } from './oci-layers.ts';
import {
  checkDigest,
  type Descriptor,
  DIGEST_PATTERN,
  type ImageSource,
  MediaType,
  parseImageConfig,
  parseManifestDocument,
  selectPlatform,
  sha256Digest,
} from './oci-manifest.ts';
import { indexTarFile, normalizeMemberPath, type TarFileMember, TarFormatError } from './oci-tar.ts';

/** Largest JSON document (index, manifest, config) read from an archive. */
const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;
/** The OCI annotation that names an image in an index. */
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/** Options of `importArchiveSource`. */
export interface ArchiveSourceOptions {
  /** The only directory archives are read from. */
  readonly archiveDir?: string;
  readonly log: (line: string) => void;
}

type ArchiveKind = 'oci' | 'oci-archive' | 'docker-archive';

/** Parsed `transport:path[:ref]`; a bare path has no transport and no ref. */
export function parseArchiveReference(pathOrRef: string): { kind: ArchiveKind | 'auto'; path: string; ref?: string } {
  const match = /^(oci|oci-archive|docker-archive):(.*)$/s.exec(pathOrRef);
  if (!match) return { kind: 'auto', path: pathOrRef };
  const rest = match[2]!;
  // As skopeo: the path ends at the first colon.
  const colon = rest.indexOf(':');
  if (colon === -1) return { kind: match[1] as ArchiveKind, path: rest };
  const ref = rest.slice(colon + 1);
  return { kind: match[1] as ArchiveKind, path: rest.slice(0, colon), ...(ref !== '' ? { ref } : {}) };
}

/** Reads named files of an archive: a directory or an indexed tar. */
interface ArchiveFiles {
  has(path: string): Promise<boolean>;
  size(path: string): Promise<number>;
  stream(path: string): AsyncIterable<Uint8Array>;
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Files of an OCI layout directory; every path is checked to resolve inside it. */
async function directoryFiles(root: string): Promise<ArchiveFiles> {
  const present = new Map<string, string>();
  const locate = async (path: string): Promise<string | undefined> => {
    const normalized = normalizeMemberPath(path);
    if (normalized.split('/').includes('..')) return undefined;
    const cachedPath = present.get(normalized);
    if (cachedPath) return cachedPath;
    const real = await realpath(resolve(root, normalized)).catch(() => undefined);
    if (real === undefined) return undefined;
    if (!isInside(root, real)) {
      throw new ImageError(ImageErrorCode.PATH_ESCAPE, `${normalized} in the OCI layout points outside it`);
    }
    if (!(await stat(real)).isFile()) return undefined;
    present.set(normalized, real);
    return real;
  };
  return {
    has: async (path) => (await locate(path)) !== undefined,
    async size(path) {
      const real = await locate(path);
      if (!real) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${path} is missing from the OCI layout`);
      return (await stat(real)).size;
    },
    stream(path) {
      return (async function* () {
        const real = await locate(path);
        if (!real) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${path} is missing from the OCI layout`);
        yield* createReadStream(real) as AsyncIterable<Buffer>;
      })();
    },
  };
}

/** Files of a tar archive, read by offset. Symlinks and hard links between members are followed inside the archive. */
async function tarFiles(file: string): Promise<ArchiveFiles> {
  let members: Map<string, TarFileMember>;
  try {
    members = await indexTarFile(file);
  } catch (err) {
    if (err instanceof TarFormatError) {
      throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${file} is not a valid tar archive: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  const find = (path: string): TarFileMember | undefined => {
    let name = normalizeMemberPath(path);
    for (let hops = 0; hops < 16; hops++) {
      const member = members.get(name);
      if (!member) return undefined;
      const { header } = member;
      if (header.type === 'file') return member;
      if (header.type === 'hardlink') {
        name = normalizeMemberPath(header.linkPath);
        continue;
      }
      if (header.type !== 'symlink') return undefined;
      const parts = header.linkPath.startsWith('/') ? [] : name.split('/').slice(0, -1);
      for (const part of header.linkPath.split('/')) {
        if (part === '..') parts.pop();
        else if (part !== '' && part !== '.') parts.push(part);
      }
      name = parts.join('/');
    }
    return undefined;
  };
  const need = (path: string) => {
    const member = find(path);
    if (!member) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${path} is missing from ${file}`);
    return member;
  };
  return {
    has: async (path) => find(path) !== undefined,
    size: async (path) => need(path).header.size,
    stream(path) {
      return (async function* () {
        const { offset, header } = need(path);
        if (header.size === 0) return;
        yield* createReadStream(file, { start: offset, end: offset + header.size - 1 }) as AsyncIterable<Buffer>;
      })();
    },
  };
}

async function readDocument(files: ArchiveFiles, path: string, what: string): Promise<Buffer> {
  if ((await files.size(path)) > MAX_DOCUMENT_BYTES) {
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of files.stream(path)) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function readBlob(files: ArchiveFiles, descriptor: Descriptor, what: string): Promise<Buffer> {
  checkDigest(descriptor.digest, what);
  if (descriptor.size > MAX_DOCUMENT_BYTES) {
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
  }
  const path = blobPath(descriptor.digest);
  if (!(await files.has(path)))
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} (${descriptor.digest}) is missing from the archive`);
  const chunks: Buffer[] = [];
  for await (const chunk of verifiedBlob(files.stream(path), descriptor, what)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function blobPath(digest: string): string {
  if (!DIGEST_PATTERN.test(digest)) throw new ImageError(ImageErrorCode.UNSUPPORTED, `unsupported digest ${digest}`);
  return `blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** Resolves the archive path inside `archiveDir`. @throws ImageError PATH_ESCAPE or NOT_FOUND. */
async function locateArchive(path: string, archiveDir: string | undefined): Promise<string> {
  if (archiveDir === undefined) {
    throw new ImageError(
      ImageErrorCode.PATH_ESCAPE,
      'importing image archives is disabled: no archive directory is configured',
    );
  }
  if (path === '' || path.includes('\0')) throw new ImageError(ImageErrorCode.INVALID_REFERENCE, 'empty archive path');
  const dir = await realpath(archiveDir).catch(() => {
    throw new ImageError(ImageErrorCode.NOT_FOUND, `the archive directory ${archiveDir} does not exist`);
  });
  const lexical = resolve(dir, path);
  if (!isInside(dir, lexical)) {
    throw new ImageError(ImageErrorCode.PATH_ESCAPE, `${path} is outside the archive directory ${archiveDir}`);
  }
  const real = await realpath(lexical).catch(() => {
    throw new ImageError(ImageErrorCode.NOT_FOUND, `archive ${path} not found in ${archiveDir}`);
  });
  if (!isInside(dir, real)) {
    throw new ImageError(ImageErrorCode.PATH_ESCAPE, `${path} resolves outside the archive directory ${archiveDir}`);
  }
  return real;
}

/** True when the file starts with a tar header (ustar magic at offset 257). */
async function looksLikeTar(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(263);
    const { bytesRead } = await handle.read(buffer, 0, 263, 0);
    return bytesRead === 263 && buffer.subarray(257, 262).toString('latin1') === 'ustar';
  } finally {
    await handle.close();
  }
}

/**
 * Reads an image archive's index (or `docker save` manifest) and config.
 * Layers are read later through `openLayer`.
 */
export async function importArchiveSource(pathOrRef: string, options: ArchiveSourceOptions): Promise<ImageSource> {
  const { kind, path, ref } = parseArchiveReference(pathOrRef);
  const real = await locateArchive(path, options.archiveDir);
  const isDir = (await stat(real)).isDirectory();
  if (kind === 'oci' && !isDir) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `oci:${path} is not a directory`);
  if (kind !== 'oci' && kind !== 'auto' && isDir)
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${kind}:${path} is a directory, not a tar file`);
  if (!isDir && !(await looksLikeTar(real))) {
    throw new ImageError(
      ImageErrorCode.INVALID_IMAGE,
      `${path} is not a tar archive (a compressed archive must be uncompressed first)`,
    );
  }
  const files = isDir ? await directoryFiles(real) : await tarFiles(real);
  let resolved: ArchiveKind = kind === 'auto' ? (isDir ? 'oci' : 'oci-archive') : kind;
  if (kind === 'auto' && !isDir && !(await files.has('index.json')) && (await files.has('manifest.json')))
    resolved = 'docker-archive';
  const source = `${resolved}:${path}${ref !== undefined ? `:${ref}` : ''}`;
  options.log(`reading ${source}`);
  return resolved === 'docker-archive' ? dockerArchiveSource(files, source, ref) : ociLayoutSource(files, source, ref);
}

async function ociLayoutSource(files: ArchiveFiles, source: string, ref: string | undefined): Promise<ImageSource> {
  if (!(await files.has('index.json')))
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source} has no index.json; it is not an OCI layout`);
  const indexDoc = parseManifestDocument(
    await readDocument(files, 'index.json', `${source} index.json`),
    `${source} index.json`,
  );
  if (indexDoc.kind !== 'index')
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source} index.json is not an image index`);
  const entries = indexDoc.index.manifests;
  const names = entries.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter((n): n is string => n !== undefined);
  let chosen: Descriptor | undefined;
  if (ref !== undefined) {
    chosen = entries.find((d) => d.annotations?.[REF_NAME_ANNOTATION] === ref);
    if (!chosen) {
      throw new ImageError(
        ImageErrorCode.NOT_FOUND,
        `${source}: no image named ${ref} (it has: ${names.join(', ') || 'no named images'})`,
      );
    }
  } else if (entries.length === 1) {
    chosen = entries[0];
  } else {
    throw new ImageError(
      ImageErrorCode.INVALID_REFERENCE,
      `${source} holds ${entries.length} images; name one with :<ref> (it has: ${names.join(', ') || 'no named images'})`,
    );
  }
  let descriptor = chosen!;
  for (let depth = 0; ; depth++) {
    if (depth > 2) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source}: image indexes nested too deep`);
    const doc = parseManifestDocument(
      await readBlob(files, descriptor, `${source} manifest`),
      `${source} manifest`,
      descriptor.mediaType,
    );
    if (doc.kind === 'index') {
      descriptor = selectPlatform(doc.index, source);
      continue;
    }
    const { manifest } = doc;
    const config = parseImageConfig(await readBlob(files, manifest.config, `${source} config`), `${source} config`);
    for (const layer of manifest.layers) {
      if (!(await files.has(blobPath(layer.digest)))) {
        throw new ImageError(
          ImageErrorCode.INVALID_IMAGE,
          `${source}: layer ${layer.digest} is missing from the archive`,
        );
      }
    }
    return {
      source,
      digest: descriptor.digest,
      config,
      layers: manifest.layers,
      openLayer: async (layer) =>
        verifiedBlob(files.stream(blobPath(layer.digest)), layer, `layer ${layer.digest} of ${source}`),
    };
  }
}

const dockerManifestSchema = z
  .array(
    z.object({
      Config: z.string(),
      RepoTags: z.array(z.string()).nullish(),
      Layers: z.array(z.string()),
    }),
  )
  .min(1);

async function dockerArchiveSource(files: ArchiveFiles, source: string, ref: string | undefined): Promise<ImageSource> {
  let json: unknown;
  try {
    json = JSON.parse((await readDocument(files, 'manifest.json', `${source} manifest.json`)).toString('utf8'));
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source} manifest.json is not valid JSON`);
  }
  const parsed = dockerManifestSchema.safeParse(json);
  if (!parsed.success) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source} manifest.json is malformed`);
  const images = parsed.data;
  const tags = images.flatMap((image) => image.RepoTags ?? []);
  let image: (typeof images)[number] | undefined;
  if (ref !== undefined) {
    const wanted = [ref, `docker.io/${ref}`, `docker.io/library/${ref}`];
    image = images.find((candidate) =>
      (candidate.RepoTags ?? []).some((tag) => wanted.includes(tag) || wanted.includes(`docker.io/${tag}`)),
    );
    if (!image)
      throw new ImageError(
        ImageErrorCode.NOT_FOUND,
        `${source}: no image tagged ${ref} (it has: ${tags.join(', ') || 'no tags'})`,
      );
  } else if (images.length === 1) {
    image = images[0];
  } else {
    throw new ImageError(
      ImageErrorCode.INVALID_REFERENCE,
      `${source} holds ${images.length} images; name one with :<repo:tag> (it has: ${tags.join(', ')})`,
    );
  }
  const { Config: configPath, Layers: layerPaths } = image!;
  const configBytes = await readDocument(files, configPath, `${source} config`);
  const configDigest = sha256Digest(configBytes);
  // The config file is named by its digest in both docker save layouts; a different name is no error, a different digest is.
  const named = /([a-f0-9]{64})(?:\.json)?$/.exec(configPath)?.[1];
  if (named !== undefined && `sha256:${named}` !== configDigest) {
    throw new ImageError(ImageErrorCode.DIGEST_MISMATCH, `${source} config ${configPath} has digest ${configDigest}`);
  }
  const config = parseImageConfig(configBytes, `${source} config`);
  if (config.diffIds === undefined || config.diffIds.length !== layerPaths.length) {
    throw new ImageError(
      ImageErrorCode.INVALID_IMAGE,
      `${source}: the config's rootfs.diff_ids do not match the ${layerPaths.length} layers`,
    );
  }
  const diffIds = config.diffIds;
  const layers: Descriptor[] = [];
  const pathOf = new Map<string, string>();
  for (const [i, layerPath] of layerPaths.entries()) {
    if (!(await files.has(layerPath)))
      throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${source}: layer ${layerPath} is missing`);
    // Verified after unpacking against rootfs.diff_ids (the layer may be stored compressed or not).
    const digest = diffIds[i]!;
    layers.push({ mediaType: MediaType.OCI_LAYER, digest, size: await files.size(layerPath) });
    pathOf.set(digest, layerPath);
  }
  return {
    source,
    digest: configDigest,
    config,
    layers,
    openLayer: async (layer) => files.stream(pathOf.get(layer.digest)!),
  };
}
