/**
 * A pull-only client of the OCI distribution API (registry v2): manifests,
 * indexes and blobs, with bearer-token (`WWW-Authenticate: Bearer realm=…`)
 * and basic authentication. Every manifest and blob is checked against its
 * sha256 digest.
 */
import type { ParsedReference } from './oci.ts';
import { ImageError, ImageErrorCode } from './oci-errors.ts';
import { verifiedBlob } from './oci-layers.ts';
import {
  checkDigest,
  type Descriptor,
  type ImageManifest,
  type ImageSource,
  MANIFEST_ACCEPT,
  parseImageConfig,
  parseManifestDocument,
  selectPlatform,
  sha256Digest,
} from './oci-manifest.ts';

/** Largest manifest, index, config or token response read into memory. */
const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;
/** Time limit of a request for a document (manifest, config, token). */
const DOCUMENT_TIMEOUT_MS = 60_000;
/** A blob download fails when no byte arrives for this long. */
const BLOB_IDLE_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 5;

/** Options of `resolveRegistrySource`. */
export interface RegistrySourceOptions {
  readonly credentials?: { username: string; password: string };
  /** Hosts (`host[:port]`) spoken to over plain http besides loopback. */
  readonly insecureRegistries: readonly string[];
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** True for loopback hosts (`localhost`, `127.x.x.x`, `[::1]`), with or without a port. */
export function isLoopbackHost(host: string): boolean {
  const hostname = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return hostname === 'localhost' || hostname === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}

function allowsHttp(host: string, insecure: readonly string[]): boolean {
  return isLoopbackHost(host) || insecure.includes(host);
}

/**
 * Whether a redirect or token realm named by the registry at `registryHost`
 * may be fetched: https, or http to a host allowed plain http; and a loopback
 * host only when the registry itself is on loopback (a remote registry cannot
 * point the server at its own local services).
 */
export function mayFollow(url: URL, registryHost: string, insecure: readonly string[]): boolean {
  const schemeOk = url.protocol === 'https:' || (url.protocol === 'http:' && allowsHttp(url.host, insecure));
  return schemeOk && (!isLoopbackHost(url.host) || isLoopbackHost(registryHost));
}

interface Challenge {
  scheme: string;
  params: Map<string, string>;
}

/** Parses the first challenge of a `WWW-Authenticate` header. */
export function parseChallenge(header: string): Challenge | undefined {
  const match = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params = new Map<string, string>();
  const pattern = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const [, key, quoted, bare] of match[2]!.matchAll(pattern)) {
    params.set(key!.toLowerCase(), quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : (bare ?? ''));
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

class RegistryClient {
  private readonly ref: ParsedReference;
  private readonly options: RegistrySourceOptions;
  private readonly baseURL: string;
  private authorization: string | undefined;

  constructor(ref: ParsedReference, options: RegistrySourceOptions) {
    this.ref = ref;
    this.options = options;
    const scheme = allowsHttp(ref.apiHost, options.insecureRegistries) ? 'http' : 'https';
    this.baseURL = `${scheme}://${ref.apiHost}`;
  }

  private get where(): string {
    return this.ref.canonical;
  }

  /**
   * GET `/v2/<repository>/<path>`. A 401 gets one (re-)authentication and a
   * retry, so a bearer token that expires during a long pull is renewed.
   */
  async get(path: string, init: { accept?: string; signal: AbortSignal }): Promise<Response> {
    const url = `${this.baseURL}/v2/${this.ref.repository}/${path}`;
    let response = await this.fetchFollowing(url, init, this.authorization);
    if (response.status === 401) {
      const challenge = parseChallenge(response.headers.get('www-authenticate') ?? '');
      await response.body?.cancel();
      await this.authenticate(challenge, init.signal);
      response = await this.fetchFollowing(url, init, this.authorization);
    }
    if (response.status === 401 || response.status === 403) {
      const detail = await errorDetail(response);
      throw new ImageError(
        ImageErrorCode.UNAUTHORIZED,
        `${this.where}: the registry refused access${this.options.credentials ? ` for user ${this.options.credentials.username}` : ' (no credentials given)'}${detail}`,
      );
    }
    return response;
  }

  /** fetch with redirects followed by hand: Authorization is dropped on another origin, https never downgrades. */
  private async fetchFollowing(
    url: string,
    init: { accept?: string; signal: AbortSignal },
    authorization: string | undefined,
  ): Promise<Response> {
    let current = new URL(url);
    const origin = current.origin;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { 'user-agent': 'warren' };
      if (init.accept) headers.accept = init.accept;
      if (authorization && current.origin === origin) headers.authorization = authorization;
      let response: Response;
      try {
        response = await fetch(current, { headers, redirect: 'manual', signal: init.signal });
      } catch (err) {
        throw this.networkError(err, current, init.signal);
      }
      if (![301, 302, 303, 307, 308].includes(response.status)) return response;
      const location = response.headers.get('location');
      await response.body?.cancel();
      if (!location) throw new ImageError(ImageErrorCode.UNREACHABLE, `${this.where}: redirect without a location`);
      const next = new URL(location, current);
      if (!mayFollow(next, this.ref.apiHost, this.options.insecureRegistries)) {
        throw new ImageError(
          ImageErrorCode.UNREACHABLE,
          `${this.where}: refusing a redirect to ${next.protocol}//${next.host}`,
        );
      }
      current = next;
    }
    throw new ImageError(ImageErrorCode.UNREACHABLE, `${this.where}: more than ${MAX_REDIRECTS} redirects`);
  }

  private networkError(err: unknown, url: URL, signal: AbortSignal): unknown {
    if (this.options.signal?.aborted) return this.options.signal.reason;
    if (signal.aborted) {
      return new ImageError(ImageErrorCode.UNREACHABLE, `registry ${url.host} did not answer in time (${this.where})`, {
        cause: err,
      });
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (err as Error).message;
    return new ImageError(
      ImageErrorCode.UNREACHABLE,
      `registry ${url.host} is unreachable (${reason}) for ${this.where}`,
      {
        cause: err,
      },
    );
  }

  private async authenticate(challenge: Challenge | undefined, signal: AbortSignal): Promise<void> {
    const credentials = this.options.credentials;
    const basic = credentials
      ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
      : undefined;
    if (challenge?.scheme === 'basic') {
      if (!basic) {
        throw new ImageError(
          ImageErrorCode.UNAUTHORIZED,
          `${this.where}: the registry requires credentials and none were given`,
        );
      }
      this.authorization = basic;
      return;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.get('realm')) {
      throw new ImageError(
        ImageErrorCode.UNAUTHORIZED,
        `${this.where}: the registry asks for authentication Warren does not speak`,
      );
    }
    let realm: URL;
    try {
      realm = new URL(challenge.params.get('realm')!);
    } catch {
      throw new ImageError(ImageErrorCode.UNAUTHORIZED, `${this.where}: the registry's token realm is not a URL`);
    }
    if (!mayFollow(realm, this.ref.apiHost, this.options.insecureRegistries)) {
      throw new ImageError(
        ImageErrorCode.UNAUTHORIZED,
        `${this.where}: refusing the token realm ${realm.protocol}//${realm.host}`,
      );
    }
    const service = challenge.params.get('service');
    if (service) realm.searchParams.set('service', service);
    realm.searchParams.set('scope', challenge.params.get('scope') ?? `repository:${this.ref.repository}:pull`);
    this.options.log(`getting a registry token from ${realm.host}`);
    const headers: Record<string, string> = { 'user-agent': 'warren', accept: 'application/json' };
    if (basic) headers.authorization = basic;
    let response: Response;
    try {
      response = await fetch(realm, { headers, redirect: 'error', signal });
    } catch (err) {
      throw this.networkError(err, realm, signal);
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new ImageError(
        ImageErrorCode.UNAUTHORIZED,
        `${this.where}: the token service refused ${credentials ? `the credentials of ${credentials.username}` : 'anonymous access'}`,
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new ImageError(ImageErrorCode.UNREACHABLE, `${this.where}: the token service answered ${response.status}`);
    }
    const body = await readLimited(response, 'the token response');
    let token: unknown;
    try {
      const json = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = json.token ?? json.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) {
      throw new ImageError(ImageErrorCode.UNAUTHORIZED, `${this.where}: the token service answered without a token`);
    }
    this.authorization = `Bearer ${token}`;
  }
}

async function errorDetail(response: Response): Promise<string> {
  try {
    const body = await readLimited(response, 'an error response', 64 * 1024);
    const json = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const first = json.errors?.[0];
    if (first) {
      const text = [first.code, first.message]
        .filter(Boolean)
        .join(': ')
        .replace(/\p{Cc}/gu, ' ');
      return ` (${text.length > 200 ? `${text.slice(0, 200)}…` : text})`;
    }
  } catch {
    // no registry error body
  }
  return '';
}

async function readLimited(response: Response, what: string, limit = MAX_DOCUMENT_BYTES): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  if (response.body) {
    for await (const chunk of response.body) {
      length += chunk.byteLength;
      if (length > limit) {
        await response.body.cancel().catch(() => undefined);
        throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${what} is larger than ${limit} bytes`);
      }
      chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
  }
  return Buffer.concat(chunks, length);
}

function requestSignal(outer: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return outer ? AbortSignal.any([outer, timeout]) : timeout;
}

/**
 * Resolves `ref` in its registry to the image for this host's platform: reads
 * the manifest (choosing from an index), checks its digest, reads the config.
 * Layers are fetched later through `openLayer`.
 */
export async function resolveRegistrySource(
  ref: ParsedReference,
  options: RegistrySourceOptions,
): Promise<ImageSource> {
  const client = new RegistryClient(ref, options);
  const where = ref.canonical;

  const fetchDocument = async (reference: string, accept: string, what: string, expected?: Descriptor | string) => {
    const signal = requestSignal(options.signal, DOCUMENT_TIMEOUT_MS);
    const response = await client.get(reference, { accept, signal });
    if (response.status === 404) {
      const detail = await errorDetail(response);
      throw new ImageError(ImageErrorCode.NOT_FOUND, `${what} not found in ${ref.apiHost}${detail}`);
    }
    if (!response.ok) {
      const detail = await errorDetail(response);
      throw new ImageError(
        ImageErrorCode.UNREACHABLE,
        `${ref.apiHost} answered ${response.status} for ${what}${detail}`,
      );
    }
    const bytes = await readLimited(response, what);
    const digest = sha256Digest(bytes);
    const expectedDigest = typeof expected === 'string' ? expected : expected?.digest;
    if (expectedDigest !== undefined && digest !== expectedDigest) {
      throw new ImageError(ImageErrorCode.DIGEST_MISMATCH, `${what} has digest ${digest}, expected ${expectedDigest}`);
    }
    if (typeof expected === 'object' && bytes.length !== expected.size) {
      throw new ImageError(
        ImageErrorCode.DIGEST_MISMATCH,
        `${what} has ${bytes.length} bytes, its descriptor says ${expected.size}`,
      );
    }
    const announced = response.headers.get('docker-content-digest');
    if (announced && /^sha256:/.test(announced) && announced !== digest && reference.startsWith('manifests/')) {
      throw new ImageError(
        ImageErrorCode.DIGEST_MISMATCH,
        `${what} has digest ${digest}, the registry says ${announced}`,
      );
    }
    return { bytes, digest, contentType: response.headers.get('content-type') ?? undefined };
  };

  options.log(`resolving ${where}`);
  const accept = MANIFEST_ACCEPT.join(', ');
  const top = await fetchDocument(`manifests/${ref.digest ?? ref.tag}`, accept, `image ${where}`, ref.digest);
  let document = parseManifestDocument(top.bytes, `the manifest of ${where}`, top.contentType);
  let digest = top.digest;
  for (let depth = 0; document.kind === 'index'; depth++) {
    if (depth >= 2) throw new ImageError(ImageErrorCode.INVALID_IMAGE, `${where}: image indexes nested too deep`);
    const chosen = selectPlatform(document.index, where);
    options.log(`${where}: ${chosen.platform?.os}/${chosen.platform?.architecture} image ${chosen.digest}`);
    const next = await fetchDocument(`manifests/${chosen.digest}`, accept, `the platform manifest of ${where}`, chosen);
    document = parseManifestDocument(next.bytes, `the manifest of ${where}`, next.contentType);
    digest = next.digest;
  }
  const manifest: ImageManifest = document.manifest;
  checkDigest(manifest.config.digest, where);
  const configDoc = await fetchDocument(
    `blobs/${manifest.config.digest}`,
    '*/*',
    `the config of ${where}`,
    manifest.config,
  );
  const config = parseImageConfig(configDoc.bytes, `the config of ${where}`);
  options.log(`${where}: manifest ${digest}, ${manifest.layers.length} layers`);

  return {
    source: where,
    digest,
    config,
    layers: manifest.layers,
    async openLayer(layer, signal) {
      const idle = new AbortController();
      const linked = signal ? AbortSignal.any([signal, idle.signal]) : idle.signal;
      let timer = setTimeout(() => idle.abort(), BLOB_IDLE_TIMEOUT_MS);
      const response = await client.get(`blobs/${layer.digest}`, { signal: linked }).catch((err: unknown) => {
        clearTimeout(timer);
        throw err;
      });
      if (!response.ok) {
        clearTimeout(timer);
        const detail = await errorDetail(response);
        const code = response.status === 404 ? ImageErrorCode.NOT_FOUND : ImageErrorCode.UNREACHABLE;
        throw new ImageError(
          code,
          `${ref.apiHost} answered ${response.status} for layer ${layer.digest} of ${where}${detail}`,
        );
      }
      const body = response.body;
      const chunks = async function* (): AsyncGenerator<Uint8Array> {
        try {
          if (!body) return;
          for await (const chunk of body) {
            clearTimeout(timer);
            timer = setTimeout(() => idle.abort(), BLOB_IDLE_TIMEOUT_MS);
            yield chunk;
          }
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          throw new ImageError(
            ImageErrorCode.UNREACHABLE,
            `download of layer ${layer.digest} of ${where} failed${idle.signal.aborted ? ': no data for 60 s' : ''}`,
            { cause: err },
          );
        } finally {
          clearTimeout(timer);
          if (body && !body.locked) await body.cancel().catch(() => undefined);
        }
      };
      return verifiedBlob(chunks(), layer, `layer ${layer.digest} of ${where}`);
    },
  };
}
