/**
 * Image manifests, indexes and configs (Docker schema 2 and OCI), checked
 * with zod, and the choice of the platform image from an index.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ImageError, ImageErrorCode } from './oci-errors.ts';

export const MediaType = {
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** Manifest media types sent in `Accept` (image manifests and indexes). */
export const MANIFEST_ACCEPT = [
  MediaType.OCI_INDEX,
  MediaType.OCI_MANIFEST,
  MediaType.DOCKER_MANIFEST_LIST,
  MediaType.DOCKER_MANIFEST,
] as const;

const LAYER_TYPES = new Set<string>([MediaType.DOCKER_LAYER_GZIP, MediaType.OCI_LAYER, MediaType.OCI_LAYER_GZIP]);
const CONFIG_TYPES = new Set<string>([MediaType.DOCKER_CONFIG, MediaType.OCI_CONFIG]);

/** A sha256 digest; other algorithms are refused. */
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

const descriptorSchema = z.object({
  mediaType: z.string(),
  digest: z.string(),
  size: z.number().int().nonnegative(),
  platform: z
    .object({ os: z.string(), architecture: z.string(), variant: z.string().optional() })
    .passthrough()
    .optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export type Descriptor = z.infer<typeof descriptorSchema>;

const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
});

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema),
});

export type ImageManifest = z.infer<typeof manifestSchema>;
export type ImageIndex = z.infer<typeof indexSchema>;

const stringList = z.array(z.string()).nullish();
const configSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  config: z
    .object({
      Env: stringList,
      WorkingDir: z.string().nullish(),
      User: z.string().nullish(),
      Entrypoint: stringList,
      Cmd: stringList,
    })
    .passthrough()
    .nullish(),
  rootfs: z.object({ type: z.string(), diff_ids: z.array(z.string()) }).optional(),
});

/** What a sandbox takes from an image's config. */
export interface ImageConfig {
  /** `KEY=value` entries. */
  env: string[];
  workingDir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
}

/** A parsed image config. */
export interface ParsedConfig {
  readonly config: ImageConfig;
  /** `rootfs.diff_ids`: sha256 of each uncompressed layer, in order. */
  readonly diffIds: readonly string[] | undefined;
}

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** @throws ImageError UNSUPPORTED for another algorithm, INVALID_IMAGE for a malformed digest. */
export function checkDigest(digest: string, where: string): void {
  if (DIGEST_PATTERN.test(digest)) return;
  if (/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) {
    throw new ImageError(ImageErrorCode.UNSUPPORTED, `${where} uses digest ${digest}; only sha256 is supported`);
  }
  throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${where} has an invalid digest ${JSON.stringify(digest)}`);
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} is not valid JSON`, { cause: err });
  }
}

function invalid(what: string, error: z.ZodError): ImageError {
  const issue = error.issues[0];
  const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
  return new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} is malformed${where}: ${issue?.message ?? 'invalid'}`);
}

/** A manifest document: either an index (several platforms) or an image manifest. */
export type ManifestDocument = { kind: 'index'; index: ImageIndex } | { kind: 'manifest'; manifest: ImageManifest };

/**
 * Parses a manifest or index. `contentType` is the registry's `Content-Type`
 * (used when the document has no `mediaType` field).
 *
 * @throws ImageError UNSUPPORTED for schema 1 and non-image artifacts, INVALID_IMAGE when malformed.
 */
export function parseManifestDocument(bytes: Uint8Array, what: string, contentType?: string): ManifestDocument {
  const json = parseJson(bytes, what) as { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown };
  const declared = typeof json?.mediaType === 'string' ? json.mediaType : contentType?.split(';')[0]?.trim();
  if (json?.schemaVersion === 1 || declared?.includes('distribution.manifest.v1')) {
    throw new ImageError(
      ImageErrorCode.UNSUPPORTED,
      `${what} is a Docker schema 1 manifest, which Warren does not support`,
    );
  }
  const isIndex =
    declared === MediaType.OCI_INDEX ||
    declared === MediaType.DOCKER_MANIFEST_LIST ||
    ((declared === undefined || declared === 'application/json') && Array.isArray(json?.manifests));
  if (isIndex) {
    const parsed = indexSchema.safeParse(json);
    if (!parsed.success) throw invalid(what, parsed.error);
    return { kind: 'index', index: parsed.data };
  }
  if (
    declared !== undefined &&
    declared !== MediaType.OCI_MANIFEST &&
    declared !== MediaType.DOCKER_MANIFEST &&
    declared !== 'application/json'
  ) {
    throw new ImageError(
      ImageErrorCode.UNSUPPORTED,
      `${what} has media type ${declared}, which is not a container image`,
    );
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) throw invalid(what, parsed.error);
  checkImageManifest(parsed.data, what);
  return { kind: 'manifest', manifest: parsed.data };
}

function checkImageManifest(manifest: ImageManifest, what: string): void {
  if (!CONFIG_TYPES.has(manifest.config.mediaType)) {
    throw new ImageError(
      ImageErrorCode.UNSUPPORTED,
      `${what} has config type ${manifest.config.mediaType}; it is not a container image`,
    );
  }
  checkDigest(manifest.config.digest, what);
  for (const layer of manifest.layers) {
    checkDigest(layer.digest, what);
    if (LAYER_TYPES.has(layer.mediaType)) continue;
    if (layer.mediaType.includes('zstd')) {
      throw new ImageError(
        ImageErrorCode.UNSUPPORTED,
        `${what} has a zstd-compressed layer (${layer.mediaType}), which Warren does not support; push the image with gzip layers`,
      );
    }
    throw new ImageError(
      ImageErrorCode.UNSUPPORTED,
      `${what} has a layer of unsupported media type ${layer.mediaType}`,
    );
  }
}

/** The OCI `os/architecture[/variant]` of this host. */
export function hostPlatform(): { os: 'linux'; architecture: string; variant?: string } {
  const map: Record<string, { architecture: string; variant?: string }> = {
    x64: { architecture: 'amd64' },
    arm64: { architecture: 'arm64', variant: 'v8' },
    arm: { architecture: 'arm', variant: 'v7' },
    ppc64: { architecture: 'ppc64le' },
    s390x: { architecture: 's390x' },
    riscv64: { architecture: 'riscv64' },
    ia32: { architecture: '386' },
  };
  const platform = map[process.arch];
  if (!platform) throw new ImageError(ImageErrorCode.UNSUPPORTED, `unsupported host architecture ${process.arch}`);
  return { os: 'linux', ...platform };
}

/**
 * The index entry for this host: `linux` and the host architecture, the host
 * variant preferred (or none given). Attestation manifests never match.
 *
 * @throws ImageError UNSUPPORTED listing the platforms the index has.
 */
export function selectPlatform(index: ImageIndex, what: string): Descriptor {
  const host = hostPlatform();
  const candidates = index.manifests.filter(
    (d) =>
      d.platform?.os === host.os &&
      d.platform.architecture === host.architecture &&
      d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest',
  );
  const chosen =
    candidates.find((d) => d.platform?.variant === host.variant) ??
    candidates.find((d) => d.platform?.variant === undefined) ??
    candidates[0];
  if (!chosen) {
    const available = index.manifests
      .map((d) =>
        d.platform ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/') : 'unknown',
      )
      .join(', ');
    throw new ImageError(
      ImageErrorCode.UNSUPPORTED,
      `${what} has no ${host.os}/${host.architecture} image (it has: ${available || 'nothing'})`,
    );
  }
  checkDigest(chosen.digest, what);
  return chosen;
}

/** Parses an image config blob. @throws ImageError INVALID_IMAGE or UNSUPPORTED (another OS). */
export function parseImageConfig(bytes: Uint8Array, what: string): ParsedConfig {
  const parsed = configSchema.safeParse(parseJson(bytes, what));
  if (!parsed.success) throw invalid(what, parsed.error);
  const { data } = parsed;
  if (data.os !== undefined && data.os !== 'linux') {
    throw new ImageError(ImageErrorCode.UNSUPPORTED, `${what} is an image for ${data.os}, not linux`);
  }
  const c = data.config ?? {};
  const config: ImageConfig = { env: c.Env ?? [] };
  if (c.WorkingDir) config.workingDir = c.WorkingDir;
  if (c.User) config.user = c.User;
  if (c.Entrypoint) config.entrypoint = c.Entrypoint;
  if (c.Cmd) config.cmd = c.Cmd;
  for (const id of data.rootfs?.diff_ids ?? []) checkDigest(id, `${what} rootfs.diff_ids`);
  return { config, diffIds: data.rootfs?.diff_ids };
}

/** An image found in a registry or an archive, ready to be materialized. */
export interface ImageSource {
  /** What the image was resolved from, for logs and `MaterializedImage.source`. */
  readonly source: string;
  /** `sha256:` digest of the platform image manifest (of the config for a `docker save` archive without one). */
  readonly digest: string;
  readonly config: ParsedConfig;
  readonly layers: readonly Descriptor[];
  /** The layer's blob as a stream that throws ImageError DIGEST_MISMATCH at its end unless it matches its descriptor. */
  openLayer(layer: Descriptor, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}
