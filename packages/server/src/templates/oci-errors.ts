/** Why an image could not be pulled or imported. */
export const ImageErrorCode = {
  /** The reference or archive path is not valid. */
  INVALID_REFERENCE: 'INVALID_REFERENCE',
  /** The registry, repository, tag, digest or archive does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** The registry refused the credentials (or anonymous access). */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** A media type, compression (zstd), schema or platform Warren does not handle. */
  UNSUPPORTED: 'UNSUPPORTED',
  /** The registry could not be reached or answered with an unexpected status. */
  UNREACHABLE: 'UNREACHABLE',
  /** A blob or manifest does not hash to its digest. */
  DIGEST_MISMATCH: 'DIGEST_MISMATCH',
  /** An archive path outside the allowed directory, or a layer entry escaping the root filesystem. */
  PATH_ESCAPE: 'PATH_ESCAPE',
  /** More bytes than `maxBytes`. */
  TOO_LARGE: 'TOO_LARGE',
  /** A malformed manifest, config, archive or layer. */
  INVALID_IMAGE: 'INVALID_IMAGE',
} as const;

export type ImageErrorCode = (typeof ImageErrorCode)[keyof typeof ImageErrorCode];

/** A failed pull or import; `message` is meant for the build log as is. */
export class ImageError extends Error {
  override readonly name = 'ImageError';
  readonly code: ImageErrorCode;

  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
