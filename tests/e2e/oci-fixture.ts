/**
 * Test fixture for OCI images: a real registry on 127.0.0.1 (Debian's
 * `docker-registry`) with no auth, htpasswd basic auth or bearer-token auth
 * (a token service run here), small busybox images built with `umoci` into an
 * OCI layout and pushed with `skopeo`, archives written with `skopeo`, and a
 * tar writer for hand-made (malicious) layers.
 *
 * @example
 * const registry = await startRegistry({ auth: 'basic' });
 * const images = await buildTestImages(join(tmp, 'images'));
 * await pushImage(images.layout, 'single', `${registry.host}/test/busybox:1`, { credentials: registry.credentials });
 * // … pullImage(`${registry.host}/test/busybox:1`, { credentials: registry.credentials, … })
 * await registry.stop();
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto';
import { once } from 'node:events';
import {
  chmod,
  chown,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** The user and password of a registry started with auth. */
export const TEST_REGISTRY_USER = 'warren';
export const TEST_REGISTRY_PASSWORD = 'warren-test-password';
/** bcrypt (cost 5) of `TEST_REGISTRY_PASSWORD`, as docker-registry's htpasswd wants. */
const TEST_REGISTRY_BCRYPT = '$2b$05$t9jIQRAJNTnqYbjCwJ0Dz.JG2q6KDaLuY55GrIqK3wKrzHk8KP29C';

/** Applets linked to `/bin/busybox` in the test images. */
export const BUSYBOX_APPLETS = [
  'sh',
  'ls',
  'cat',
  'echo',
  'env',
  'id',
  'pwd',
  'stat',
  'test',
  'true',
  'false',
  'mkdir',
  'rm',
  'sleep',
  'wc',
];

/** Runs a command; rejects with its output if it fails. */
export function run(command: string, args: readonly string[], options: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${out.trim()}`)),
    );
  });
}

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

// ---------------------------------------------------------------------------
// Registry

export type RegistryAuth = 'none' | 'basic' | 'token';

/** A running registry. */
export interface TestRegistry {
  /** `127.0.0.1:<port>`, the registry part of image references. */
  readonly host: string;
  readonly auth: RegistryAuth;
  /** Credentials accepted when `auth` is not `none`. */
  readonly credentials: { username: string; password: string };
  /** Requests the token service answered (token auth only). */
  readonly tokenRequests: () => number;
  /** Everything the registry printed. */
  readonly output: () => string;
  /** The registry's storage root (blobs under `docker/registry/v2/blobs/sha256/<2>/<hex>/data`). */
  readonly storageDir: string;
  /** Stops the registry (and token service) and removes its storage. */
  stop(): Promise<void>;
}

/**
 * Starts `docker-registry serve` on a free port of 127.0.0.1 with storage in
 * a temporary directory. `basic` protects it with htpasswd; `token` with the
 * bearer-token flow, served by a token service on another port of 127.0.0.1
 * that signs ES256 tokens for `TEST_REGISTRY_USER` (anonymous token requests
 * are refused).
 */
export async function startRegistry(options: { auth?: RegistryAuth } = {}): Promise<TestRegistry> {
  const auth = options.auth ?? 'none';
  const dir = await mkdtemp(join(tmpdir(), 'warren-registry-'));
  let tokenServer: Server | undefined;
  let child: ChildProcess | undefined;
  let tokenRequests = 0;
  try {
    let authConfig = '';
    if (auth === 'basic') {
      await writeFile(join(dir, 'htpasswd'), `${TEST_REGISTRY_USER}:${TEST_REGISTRY_BCRYPT}\n`);
      authConfig = `auth:\n  htpasswd:\n    realm: warren-test\n    path: ${join(dir, 'htpasswd')}\n`;
    } else if (auth === 'token') {
      const service = await startTokenService(dir, () => tokenRequests++);
      tokenServer = service.server;
      authConfig =
        'auth:\n  token:\n' +
        `    realm: http://127.0.0.1:${service.port}/token\n` +
        `    service: ${TOKEN_SERVICE}\n` +
        `    issuer: ${TOKEN_ISSUER}\n` +
        `    rootcertbundle: ${service.certPath}\n`;
    }
    let output = '';
    let host = '';
    let exited: Promise<unknown> = Promise.resolve();
    // The free port can be taken by someone else before the registry binds it: then try another.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const config =
        'version: 0.1\n' +
        'log:\n  level: warn\n  accesslog:\n    disabled: true\n' +
        `storage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\n` +
        `http:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}\n` +
        authConfig;
      await writeFile(join(dir, 'config.yml'), config);
      output = '';
      const spawned = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = spawned;
      spawned.stdout?.on('data', (b: Buffer) => {
        output += b.toString();
      });
      spawned.stderr?.on('data', (b: Buffer) => {
        output += b.toString();
      });
      exited = once(spawned, 'exit').catch(() => undefined);
      host = `127.0.0.1:${port}`;
      try {
        await waitForRegistry(host, spawned, () => output);
        break;
      } catch (err) {
        if (attempt >= 3 || !/address already in use/.test(output)) throw err;
      }
    }
    const started = child;
    const stop = async () => {
      if (started.exitCode === null && started.signalCode === null) {
        started.kill('SIGTERM');
        await exited;
      }
      if (tokenServer) {
        tokenServer.closeAllConnections();
        await new Promise<void>((resolve) => tokenServer!.close(() => resolve()));
      }
      await rm(dir, { recursive: true, force: true });
    };
    return {
      host,
      auth,
      credentials: { username: TEST_REGISTRY_USER, password: TEST_REGISTRY_PASSWORD },
      tokenRequests: () => tokenRequests,
      output: () => output,
      storageDir: join(dir, 'data'),
      stop,
    };
  } catch (err) {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit').catch(() => undefined);
    }
    tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function waitForRegistry(host: string, child: ChildProcess, output: () => string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${output()}`);
    try {
      const response = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(2000) });
      await response.body?.cancel();
      if (response.status === 200 || response.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`docker-registry did not answer on ${host}: ${output()}`);
}

const TOKEN_SERVICE = 'warren-test-registry';
const TOKEN_ISSUER = 'warren-test-token-issuer';

/** docker/libtrust key id: base32 of the first 240 bits of sha256(DER public key), in groups of four. */
function libtrustKeyId(publicKeyDer: Buffer): string {
  const bytes = createHash('sha256').update(publicKeyDer).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

async function startTokenService(
  dir: string,
  onRequest: () => void,
): Promise<{ server: Server; port: number; certPath: string }> {
  const keyPath = join(dir, 'token-key.pem');
  const certPath = join(dir, 'token-cert.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '2',
    '-subj',
    '/CN=warren-test-token',
  ]);
  const privateKey = createPrivateKey(await readFile(keyPath));
  const publicDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const kid = libtrustKeyId(publicDer);
  const expectedAuth = `Basic ${Buffer.from(`${TEST_REGISTRY_USER}:${TEST_REGISTRY_PASSWORD}`).toString('base64')}`;
  const server = createServer((req, res) => {
    onRequest();
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization !== expectedAuth) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
      return;
    }
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      const [type, name, actions] = scope.split(':');
      return type && name && actions ? [{ type, name, actions: actions.split(',') }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', kid }));
    const claims = base64url(
      JSON.stringify({
        iss: TOKEN_ISSUER,
        sub: TEST_REGISTRY_USER,
        aud: url.searchParams.get('service') ?? TOKEN_SERVICE,
        exp: now + 600,
        nbf: now - 60,
        iat: now,
        jti: randomBytes(8).toString('hex'),
        access,
      }),
    );
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), {
      key: privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${header}.${claims}.${base64url(signature)}`, expires_in: 600 }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('token service has no port');
  return { server, port: address.port, certPath };
}

// ---------------------------------------------------------------------------
// Images

/** What the test images hold, for assertions. */
export const TEST_IMAGE = {
  env: 'GREETING=hello-from-oci',
  workingDir: '/work',
  cmd: ['/bin/sh'],
  /** In `single` and `multi`: mode 0640, owner 1000:1000. */
  ownedFile: 'home/user/owned.txt',
  /** In `single` and `multi`: a hard link of `bin/busybox`. */
  hardLink: 'usr/bin/busybox-hard',
  /** In `single`, deleted by a whiteout in the second layer of `multi`. */
  removedFile: 'etc/motd',
  /** In `single`, its content deleted (whiteout per file) in `multi`. */
  replacedDir: 'opt/data',
  /** Added by the second layer of `multi`. */
  addedFile: 'etc/layer2.txt',
} as const;

/** An OCI layout holding the test images, by tag. */
export interface TestImages {
  /** OCI layout directory. */
  readonly layout: string;
  /** `single`: one layer. `multi`: `single` plus a layer with whiteouts and a new file. */
  readonly tags: { readonly single: 'single'; readonly multi: 'multi' };
}

/**
 * Builds the test images with umoci into an OCI layout at `dir/layout`:
 * `/bin/busybox` (static) with applet symlinks, `/etc/passwd`, a file owned
 * by 1000:1000, a hard link, an env var, a workdir and a cmd (`single`); then
 * a second layer that deletes `/etc/motd` and `/opt/data/old.txt` and adds a
 * file (`multi`).
 */
export async function buildTestImages(dir: string): Promise<TestImages> {
  const layout = join(dir, 'layout');
  await mkdir(dir, { recursive: true });
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:single`]);
  const first = join(dir, 'bundle-single');
  await run('umoci', ['unpack', '--image', `${layout}:single`, first]);
  const root = join(first, 'rootfs');
  for (const sub of ['bin', 'etc', 'usr/bin', 'home/user', 'opt/data', 'work', 'tmp']) {
    await mkdir(join(root, sub), { recursive: true, mode: 0o755 });
  }
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile('/bin/busybox', join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  for (const applet of BUSYBOX_APPLETS) await symlink('busybox', join(root, 'bin', applet));
  await link(join(root, 'bin/busybox'), join(root, TEST_IMAGE.hardLink));
  await writeFile(
    join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n',
  );
  await writeFile(join(root, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
  await writeFile(join(root, TEST_IMAGE.removedFile), 'welcome\n');
  await writeFile(join(root, 'opt/data/old.txt'), 'old\n');
  await writeFile(join(root, TEST_IMAGE.ownedFile), 'owned by user\n', { mode: 0o640 });
  await chmod(join(root, TEST_IMAGE.ownedFile), 0o640);
  await chown(join(root, TEST_IMAGE.ownedFile), 1000, 1000);
  await chown(join(root, 'home/user'), 1000, 1000);
  await run('umoci', ['repack', '--image', `${layout}:single`, first]);
  await run('umoci', [
    'config',
    '--image',
    `${layout}:single`,
    '--config.env',
    TEST_IMAGE.env,
    '--config.workingdir',
    TEST_IMAGE.workingDir,
    '--config.cmd',
    TEST_IMAGE.cmd[0],
  ]);

  await run('umoci', ['tag', '--image', `${layout}:single`, 'multi']);
  const second = join(dir, 'bundle-multi');
  await run('umoci', ['unpack', '--image', `${layout}:multi`, second]);
  await rm(join(second, 'rootfs', TEST_IMAGE.removedFile));
  await rm(join(second, 'rootfs/opt/data/old.txt'));
  await writeFile(join(second, 'rootfs/opt/data/new.txt'), 'new\n');
  await writeFile(join(second, 'rootfs', TEST_IMAGE.addedFile), 'from layer 2\n');
  await run('umoci', ['repack', '--image', `${layout}:multi`, second]);
  await rm(first, { recursive: true, force: true });
  await rm(second, { recursive: true, force: true });
  return { layout, tags: { single: 'single', multi: 'multi' } };
}

/** Copies `layout:tag` to `docker://<dest>` (plain http), with `credentials` when given; `all` copies every image of an index. */
export async function pushImage(
  layout: string,
  tag: string,
  dest: string,
  options: { credentials?: { username: string; password: string }; all?: boolean } = {},
): Promise<void> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false'];
  if (options.all) args.push('--all');
  if (options.credentials) args.push('--dest-creds', `${options.credentials.username}:${options.credentials.password}`);
  args.push(`oci:${layout}:${tag}`, `docker://${dest}`);
  await run('skopeo', args);
}

/** Writes `layout:tag` as an `oci-archive` or `docker-archive` tar file at `file`. */
export async function writeArchive(
  layout: string,
  tag: string,
  file: string,
  format: 'oci-archive' | 'docker-archive',
): Promise<void> {
  const dest =
    format === 'oci-archive' ? `oci-archive:${file}:${tag}` : `docker-archive:${file}:warren-test/${tag}:latest`;
  await run('skopeo', ['copy', '--quiet', `oci:${layout}:${tag}`, dest]);
}

// ---------------------------------------------------------------------------
// Hand-made layers

/** One entry of a hand-made tar. Paths are written as given (`../x`, `/abs` included). */
export interface RawTarEntry {
  path: string;
  type?: 'file' | 'directory' | 'symlink' | 'hardlink' | 'char' | 'fifo';
  content?: string | Buffer;
  linkPath?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

/** A ustar archive of `entries`, long paths in pax records; nothing is checked or cleaned. */
export function writeTar(entries: readonly RawTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  const header = (name: string, typeFlag: string, size: number, entry: RawTarEntry, linkPath = '') => {
    const block = Buffer.alloc(512);
    block.write(name, 0, 100, 'utf8');
    const octal = (value: number, offset: number, length: number) =>
      block.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii');
    octal(entry.mode ?? (typeFlag === '5' ? 0o755 : 0o644), 100, 8);
    octal(entry.uid ?? 0, 108, 8);
    octal(entry.gid ?? 0, 116, 8);
    octal(size, 124, 12);
    octal(1_700_000_000, 136, 12);
    block.write(typeFlag, 156, 1, 'ascii');
    block.write(linkPath, 157, 100, 'utf8');
    block.write('ustar\0', 257, 6, 'latin1');
    block.write('00', 263, 2, 'latin1');
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of block) sum += byte;
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
    return block;
  };
  const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
  for (const entry of entries) {
    const types = { file: '0', directory: '5', symlink: '2', hardlink: '1', char: '3', fifo: '6' } as const;
    const typeFlag = types[entry.type ?? 'file'];
    const data = typeFlag === '0' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0);
    const linkPath = entry.linkPath ?? '';
    if (Buffer.byteLength(entry.path) > 99 || Buffer.byteLength(linkPath) > 99) {
      const record = (key: string, value: string) => {
        const body = ` ${key}=${value}\n`;
        let length = body.length + 1;
        while (`${length}${body}`.length !== length) length = `${length}${body}`.length;
        return `${length}${body}`;
      };
      const pax = Buffer.from(record('path', entry.path) + (linkPath ? record('linkpath', linkPath) : ''));
      blocks.push(header('PaxHeader', 'x', pax.length, { path: 'PaxHeader' }), pad(pax));
    }
    blocks.push(header(entry.path.slice(0, 99), typeFlag, data.length, entry, linkPath.slice(0, 99)), pad(data));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/**
 * Adds a hand-made layer (gzip-compressed) on top of `layout:fromTag` and
 * tags the result `toTag`: writes the layer blob, a config with its diff id
 * appended, a manifest, and an index entry.
 */
export async function appendRawLayer(layout: string, fromTag: string, toTag: string, tar: Buffer): Promise<void> {
  const blobs = join(layout, 'blobs/sha256');
  const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
  const writeBlob = async (data: Buffer) => {
    const hex = sha(data);
    await writeFile(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as {
    manifests: Array<{ mediaType: string; digest: string; size: number; annotations?: Record<string, string> }>;
  };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === fromTag);
  if (!entry) throw new Error(`no ${fromTag} in ${layout}`);
  const manifest = JSON.parse(await readFile(join(blobs, entry.digest.slice(7)), 'utf8')) as {
    config: { mediaType: string; digest: string; size: number };
    layers: Array<{ mediaType: string; digest: string; size: number }>;
  };
  const config = JSON.parse(await readFile(join(blobs, manifest.config.digest.slice(7)), 'utf8')) as {
    rootfs: { diff_ids: string[] };
  };
  const layer = await writeBlob(gzipSync(tar));
  config.rootfs.diff_ids.push(`sha256:${sha(tar)}`);
  const configBlob = await writeBlob(Buffer.from(JSON.stringify(config)));
  manifest.config = { ...manifest.config, ...configBlob };
  manifest.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer });
  const manifestBlob = await writeBlob(Buffer.from(JSON.stringify(manifest)));
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== toTag);
  index.manifests.push({
    mediaType: entry.mediaType,
    ...manifestBlob,
    annotations: { 'org.opencontainers.image.ref.name': toTag },
  });
  await writeFile(indexPath, JSON.stringify(index));
}

/**
 * Tags `toTag` in the layout as an OCI index of the images tagged in
 * `platforms` (`{ 'linux/amd64': 'single', … }`).
 */
export async function writeIndex(layout: string, toTag: string, platforms: Record<string, string>): Promise<string> {
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as {
    manifests: Array<{ mediaType: string; digest: string; size: number; annotations?: Record<string, string> }>;
  };
  const manifests = Object.entries(platforms).map(([platform, tag]) => {
    const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
    if (!entry) throw new Error(`no ${tag} in ${layout}`);
    const [os, architecture] = platform.split('/');
    return { mediaType: entry.mediaType, digest: entry.digest, size: entry.size, platform: { os, architecture } };
  });
  const data = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }),
  );
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(layout, 'blobs/sha256', hex), data);
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== toTag);
  index.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${hex}`,
    size: data.length,
    annotations: { 'org.opencontainers.image.ref.name': toTag },
  });
  await writeFile(indexPath, JSON.stringify(index));
  return `sha256:${hex}`;
}

/** `sha256:` digest of the manifest tagged `tag` in the layout. */
export async function manifestDigest(layout: string, tag: string): Promise<string> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`no ${tag} in ${layout}`);
  return entry.digest;
}

/** What `promise` rejects with; `undefined` if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

/** True when `path` exists (a dangling symlink counts). */
export async function pathExists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}
