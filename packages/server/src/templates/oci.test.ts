/**
 * Pulls and imports real images: a docker-registry on 127.0.0.1 started here
 * (no auth, htpasswd, bearer tokens), images built with umoci and pushed or
 * archived with skopeo (tests/e2e/oci-fixture.ts).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendRawLayer,
  buildTestImages,
  freePort,
  manifestDigest,
  pathExists,
  pushImage,
  rejectionOf,
  startRegistry,
  TEST_IMAGE,
  type TestImages,
  type TestRegistry,
  writeArchive,
  writeIndex,
  writeTar,
} from '../../../../tests/e2e/oci-fixture.ts';
import { SANDBOX_ID_SHIFT } from './builder.ts';
import {
  ImageError,
  type ImageOptions,
  importImageArchive,
  type MaterializedImage,
  parseImageReference,
  pullImage,
} from './oci.ts';
import { isLoopbackHost, mayFollow, parseChallenge } from './oci-registry.ts';

const hasTools = ['docker-registry', 'umoci', 'skopeo', 'openssl'].every(
  (name) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name]).status === 0,
);
const isRoot = process.getuid?.() === 0;

async function errorOf(promise: Promise<unknown>): Promise<ImageError> {
  const err = await rejectionOf(promise);
  expect(err).toBeInstanceOf(ImageError);
  return err as ImageError;
}

/** An HTTP server on a free port of 127.0.0.1; a handler that throws answers 502. */
async function startHTTPServer(
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    res.on('error', () => undefined);
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Answers `req` with what the registry at `host` answers to it (status, body and the headers a client needs). */
async function relay(host: string, req: IncomingMessage, res: ServerResponse, authorization: string | undefined) {
  const upstream = await fetch(`http://${host}${req.url}`, {
    headers: { ...(authorization ? { authorization } : {}), accept: req.headers.accept ?? '*/*' },
    signal: AbortSignal.timeout(10_000),
  });
  const headers: Record<string, string> = {};
  for (const name of ['content-type', 'docker-content-digest', 'www-authenticate']) {
    const value = upstream.headers.get(name);
    if (value) headers[name] = value;
  }
  res.writeHead(upstream.status, headers).end(Buffer.from(await upstream.arrayBuffer()));
}

describe('parseChallenge', () => {
  it('reads the scheme and the quoted or bare parameters of WWW-Authenticate', () => {
    const challenge = parseChallenge(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull",error=insufficient_scope',
    );
    expect(challenge?.scheme).toBe('bearer');
    expect(Object.fromEntries(challenge?.params ?? [])).toEqual({
      realm: 'https://auth.example.com/token',
      service: 'registry.example.com',
      scope: 'repository:a/b:pull',
      error: 'insufficient_scope',
    });
    expect(parseChallenge('Basic realm="a \\"quoted\\" realm"')?.params.get('realm')).toBe('a "quoted" realm');
  });
});

describe('mayFollow', () => {
  it('lets a registry send the client only to https, to hosts allowed http, and to loopback only from loopback', () => {
    const follow = (url: string, registry: string, insecure: string[] = []) =>
      mayFollow(new URL(url), registry, insecure);
    expect(follow('https://cdn.example.com/blob', 'registry.example.com')).toBe(true);
    expect(follow('http://cdn.example.com/blob', 'registry.example.com')).toBe(false);
    expect(follow('http://cdn.example.com/blob', 'registry.example.com', ['cdn.example.com'])).toBe(true);
    expect(follow('http://127.0.0.1:5000/blob', '127.0.0.1:5001')).toBe(true);
    expect(follow('http://127.0.0.1:8080/token', 'registry.example.com')).toBe(false);
    expect(follow('https://localhost/token', 'registry.example.com')).toBe(false);
    expect(follow('http://[::1]:80/x', 'registry.example.com')).toBe(false);
    expect(isLoopbackHost('127.1.2.3:99')).toBe(true);
    expect(isLoopbackHost('128.0.0.1')).toBe(false);
  });
});

describe('parseImageReference', () => {
  it('splits registry, repository, tag and digest', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(parseImageReference('127.0.0.1:5000/tools/busybox:1.36', null)).toMatchObject({
      registry: '127.0.0.1:5000',
      apiHost: '127.0.0.1:5000',
      repository: 'tools/busybox',
      tag: '1.36',
    });
    expect(parseImageReference(`localhost/app@${digest}`, null)).toMatchObject({
      registry: 'localhost',
      repository: 'app',
      digest,
      canonical: `localhost/app@${digest}`,
    });
    expect(parseImageReference('registry.example.com/a/b', null)).toMatchObject({ tag: 'latest' });
  });

  it('sends short names to the default registry, or nowhere', () => {
    expect(parseImageReference('python:3.11', null)).toBeUndefined();
    expect(parseImageReference('python:3.11', 'docker.io')).toMatchObject({
      registry: 'docker.io',
      apiHost: 'registry-1.docker.io',
      repository: 'library/python',
      tag: '3.11',
    });
    expect(parseImageReference('team/app', '127.0.0.1:5000')).toMatchObject({
      registry: '127.0.0.1:5000',
      repository: 'team/app',
    });
  });

  it('rejects malformed references', () => {
    for (const ref of [
      '',
      'UPPER/case:1',
      'a b',
      'host.io/app:bad tag',
      'host.io/app@sha256:short',
      'host.io/../x',
      'host.io/app:',
    ]) {
      expect(parseImageReference(ref, 'docker.io')).toBeUndefined();
    }
  });

  it('pullImage refuses a short name without a default registry before any network traffic', async () => {
    const err = await errorOf(pullImage('python:3.11', { cacheDir: join(tmpdir(), 'never-created') }));
    expect(err.code).toBe('INVALID_REFERENCE');
    expect(err.message).toMatch(/no default registry/);
  });
});

describe.runIf(hasTools && isRoot)('OCI images from a registry and from archives', () => {
  let tmp: string;
  let images: TestImages;
  let open: TestRegistry;
  let basic: TestRegistry;
  let token: TestRegistry;
  let cacheCount = 0;
  const newCache = () => join(tmp, `cache-${++cacheCount}`);

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'warren-oci-test-'));
    images = await buildTestImages(join(tmp, 'images'));
    [open, basic, token] = await Promise.all([
      startRegistry(),
      startRegistry({ auth: 'basic' }),
      startRegistry({ auth: 'token' }),
    ]);
    await pushImage(images.layout, 'multi', `${open.host}/test/busybox:multi`);
    await pushImage(images.layout, 'multi', `${basic.host}/test/busybox:multi`, { credentials: basic.credentials });
    await pushImage(images.layout, 'single', `${token.host}/test/busybox:single`, { credentials: token.credentials });
  }, 180_000);

  afterAll(async () => {
    await Promise.all([open?.stop(), basic?.stop(), token?.stop()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** Checks the flattened `multi` image: layer 2's whiteouts applied, ids shifted, modes and links kept. */
  async function expectMultiRootfs(image: MaterializedImage): Promise<void> {
    const { rootfs } = image;
    const rootStat = await stat(rootfs);
    expect([rootStat.uid, rootStat.gid]).toEqual([SANDBOX_ID_SHIFT, SANDBOX_ID_SHIFT]);
    const busybox = await stat(join(rootfs, 'bin/busybox'));
    expect(busybox.mode & 0o777).toBe(0o755);
    expect(busybox.uid).toBe(SANDBOX_ID_SHIFT);
    expect((await stat(join(rootfs, TEST_IMAGE.hardLink))).ino).toBe(busybox.ino);
    expect(await readlink(join(rootfs, 'bin/sh'))).toBe('busybox');
    const owned = await stat(join(rootfs, TEST_IMAGE.ownedFile));
    expect([owned.uid, owned.gid, owned.mode & 0o777]).toEqual([
      SANDBOX_ID_SHIFT + 1000,
      SANDBOX_ID_SHIFT + 1000,
      0o640,
    ]);
    expect(await pathExists(join(rootfs, TEST_IMAGE.removedFile))).toBe(false);
    expect(await readdir(join(rootfs, TEST_IMAGE.replacedDir))).toEqual(['new.txt']);
    expect(await readFile(join(rootfs, TEST_IMAGE.addedFile), 'utf8')).toBe('from layer 2\n');
    expect(image.config).toEqual({ env: [TEST_IMAGE.env], workingDir: TEST_IMAGE.workingDir, cmd: TEST_IMAGE.cmd });
  }

  it('pulls anonymously, flattens the layers and caches the result by digest', async () => {
    const cacheDir = newCache();
    const logs: string[] = [];
    const image = await pullImage(`${open.host}/test/busybox:multi`, { cacheDir, onLog: (line) => logs.push(line) });
    expect(image.cached).toBe(false);
    expect(image.digest).toBe(await manifestDigest(images.layout, 'multi'));
    expect(image.rootfs).toBe(join(cacheDir, `${image.digest.slice(7)}-r1`, 'rootfs'));
    await expectMultiRootfs(image);
    expect(logs.filter((line) => /^layer \d\/2 sha256:/.test(line))).toHaveLength(2);
    // The tree is a usable root: its static busybox runs in it.
    const chrooted = spawnSync('chroot', [image.rootfs, '/bin/sh', '-c', 'echo "$((6 * 7))"'], { encoding: 'utf8' });
    expect(chrooted.stdout.trim()).toBe('42');

    const again: string[] = [];
    const second = await pullImage(`${open.host}/test/busybox:multi`, { cacheDir, onLog: (line) => again.push(line) });
    expect(second).toMatchObject({ cached: true, rootfs: image.rootfs, digest: image.digest, config: image.config });
    expect(again.some((line) => line.startsWith('layer '))).toBe(false);
    expect(again.some((line) => line.startsWith('using cached image'))).toBe(true);
    expect((await readdir(cacheDir)).sort()).toEqual([
      `${image.digest.slice(7)}-r1`,
      `${image.digest.slice(7)}-r1.lock`,
    ]);
  });

  it('shares one unpacking between concurrent pulls of the same image', async () => {
    const cacheDir = newCache();
    const logs: string[] = [];
    const options: ImageOptions = { cacheDir, onLog: (line) => logs.push(line) };
    const [a, b] = await Promise.all([
      pullImage(`${open.host}/test/busybox:multi`, options),
      pullImage(`${open.host}/test/busybox:multi`, options),
    ]);
    expect(a.rootfs).toBe(b.rootfs);
    expect(logs.filter((line) => line.startsWith('layer 1/2 sha256:'))).toHaveLength(1);
  });

  it('pulls with basic auth, and refuses missing or wrong credentials', async () => {
    const ref = `${basic.host}/test/busybox:multi`;
    const anonymous = await errorOf(pullImage(ref, { cacheDir: newCache() }));
    expect(anonymous.code).toBe('UNAUTHORIZED');
    const wrong = await errorOf(
      pullImage(ref, {
        cacheDir: newCache(),
        credentials: { username: basic.credentials.username, password: 'wrong' },
      }),
    );
    expect(wrong.code).toBe('UNAUTHORIZED');
    expect(wrong.message).toContain(basic.credentials.username);
    const image = await pullImage(ref, { cacheDir: newCache(), credentials: basic.credentials });
    await expectMultiRootfs(image);
  });

  it('pulls with a bearer token from the registry’s token service', async () => {
    const ref = `${token.host}/test/busybox:single`;
    const before = token.tokenRequests();
    const anonymous = await errorOf(pullImage(ref, { cacheDir: newCache() }));
    expect(anonymous.code).toBe('UNAUTHORIZED');
    expect(token.tokenRequests()).toBe(before + 1);
    const image = await pullImage(ref, { cacheDir: newCache(), credentials: token.credentials });
    expect(token.tokenRequests()).toBe(before + 2);
    expect(image.digest).toBe(await manifestDigest(images.layout, 'single'));
    // `single` still has what layer 2 of `multi` deletes.
    expect(await readFile(join(image.rootfs, TEST_IMAGE.removedFile), 'utf8')).toBe('welcome\n');
  });

  it('picks the host platform from an image index', async () => {
    const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64';
    const otherArch = hostArch === 'amd64' ? 's390x' : 'amd64';
    await writeIndex(images.layout, 'multiarch', { [`linux/${otherArch}`]: 'multi', [`linux/${hostArch}`]: 'single' });
    await pushImage(images.layout, 'multiarch', `${open.host}/test/multiarch:1`, { all: true });
    const image = await pullImage(`${open.host}/test/multiarch:1`, { cacheDir: newCache() });
    expect(image.digest).toBe(await manifestDigest(images.layout, 'single'));
    expect(await pathExists(join(image.rootfs, TEST_IMAGE.removedFile))).toBe(true);
  });

  it('follows a blob redirect to another origin without sending the credentials there', async () => {
    // Front (the "registry" the client talks to) relays manifests to the htpasswd registry and redirects
    // blob requests to a "CDN" on another port, which fetches the blob with its own credentials.
    const registryAuth = `Basic ${Buffer.from(`${basic.credentials.username}:${basic.credentials.password}`).toString('base64')}`;
    const cdnAuthHeaders: Array<string | undefined> = [];
    let frontAuthorized = 0;
    const cdn = await startHTTPServer(async (req, res) => {
      cdnAuthHeaders.push(req.headers.authorization);
      await relay(basic.host, req, res, registryAuth);
    });
    const front = await startHTTPServer(async (req, res) => {
      if (req.headers.authorization) frontAuthorized++;
      if (req.url?.includes('/blobs/') && req.url.includes('/v2/test/')) {
        res.writeHead(307, { location: `http://127.0.0.1:${cdn.port}${req.url}` }).end();
        return;
      }
      await relay(basic.host, req, res, req.headers.authorization);
    });
    try {
      const image = await pullImage(`127.0.0.1:${front.port}/test/busybox:multi`, {
        cacheDir: newCache(),
        credentials: basic.credentials,
      });
      await expectMultiRootfs(image);
      expect(frontAuthorized).toBeGreaterThan(0);
      // Config and two layers came through the redirect, none of them with the registry credentials.
      expect(cdnAuthHeaders).toEqual([undefined, undefined, undefined]);
    } finally {
      await Promise.all([front.close(), cdn.close()]);
    }
  });

  it('a pull that joined another one which gets cancelled finishes the image itself', async () => {
    const manifest = JSON.parse(
      await readFile(
        join(images.layout, 'blobs/sha256', (await manifestDigest(images.layout, 'multi')).slice(7)),
        'utf8',
      ),
    ) as { layers: Array<{ digest: string }> };
    const firstLayer = manifest.layers[0]!.digest;
    // Layer downloads wait at the gate, so the first pull is certainly still unpacking when the second joins.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let layerRequested!: () => void;
    const firstPullWaits = new Promise<void>((resolve) => {
      layerRequested = resolve;
    });
    const front = await startHTTPServer(async (req, res) => {
      if (req.url?.endsWith(firstLayer)) {
        layerRequested();
        await gate;
      }
      await relay(open.host, req, res, undefined);
    });
    try {
      const ref = `127.0.0.1:${front.port}/test/busybox:multi`;
      const cacheDir = newCache();
      const cancelFirst = new AbortController();
      const reason = new Error('first build cancelled');
      const first = pullImage(ref, { cacheDir, signal: cancelFirst.signal });
      const firstOutcome = rejectionOf(first);
      await firstPullWaits;
      const secondLog: string[] = [];
      const second = pullImage(ref, {
        cacheDir,
        onLog: (line) => {
          secondLog.push(line);
          if (line.startsWith('joining a pull')) {
            cancelFirst.abort(reason);
            release();
          }
        },
      });
      expect(await firstOutcome).toBe(reason);
      const image = await second;
      await expectMultiRootfs(image);
      expect(secondLog.some((line) => line.includes('starting over'))).toBe(true);
    } finally {
      release();
      await front.close();
    }
  });

  it('says which image, tag or registry is missing', async () => {
    const noTag = await errorOf(pullImage(`${open.host}/test/busybox:nope`, { cacheDir: newCache() }));
    expect(noTag.code).toBe('NOT_FOUND');
    expect(noTag.message).toContain('test/busybox:nope');
    const noRepo = await errorOf(pullImage(`${open.host}/test/none:1`, { cacheDir: newCache() }));
    expect(noRepo.code).toBe('NOT_FOUND');
    const port = await freePort();
    const down = await errorOf(pullImage(`127.0.0.1:${port}/test/busybox:1`, { cacheDir: newCache() }));
    expect(down.code).toBe('UNREACHABLE');
    expect(down.message).toContain('ECONNREFUSED');
  });

  it('fails on a layer whose bytes do not match its digest, leaving nothing in the cache', async () => {
    // A layer of its own, so tampering with its blob affects no other test.
    await appendRawLayer(images.layout, 'single', 'tamper', writeTar([{ path: 'unique', content: randomBytes(4096) }]));
    await pushImage(images.layout, 'tamper', `${open.host}/test/tamper:1`);
    const manifest = JSON.parse(
      await readFile(
        join(images.layout, 'blobs/sha256', (await manifestDigest(images.layout, 'tamper')).slice(7)),
        'utf8',
      ),
    ) as { layers: Array<{ digest: string }> };
    const hex = manifest.layers.at(-1)!.digest.slice(7);
    const blob = join(open.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const data = await readFile(blob);
    // Byte 4 is the gzip header's mtime: the layer still decompresses to the same files, only the digest differs.
    data[4]! ^= 0xff;
    await writeFile(blob, data);

    const cacheDir = newCache();
    const err = await errorOf(pullImage(`${open.host}/test/tamper:1`, { cacheDir }));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(hex);
    expect((await readdir(cacheDir)).filter((name) => !name.endsWith('.lock'))).toEqual([]);
  });

  it('refuses a layer with an entry escaping the root filesystem', async () => {
    const marker = `escaped-${randomBytes(4).toString('hex')}`;
    await appendRawLayer(
      images.layout,
      'single',
      'evil',
      writeTar([{ path: `../../../../../../tmp/${marker}`, content: 'pwned' }]),
    );
    await pushImage(images.layout, 'evil', `${open.host}/test/evil:1`);
    const cacheDir = newCache();
    const err = await errorOf(pullImage(`${open.host}/test/evil:1`, { cacheDir }));
    expect(err.code).toBe('PATH_ESCAPE');
    expect(await pathExists(join('/tmp', marker))).toBe(false);
    expect((await readdir(cacheDir)).filter((name) => !name.endsWith('.lock'))).toEqual([]);
  });

  it('stops on abort and removes what it had unpacked; a crashed pull’s leftovers go on the next pull', async () => {
    const cacheDir = newCache();
    const controller = new AbortController();
    const reason = new Error('build cancelled');
    const pull = pullImage(`${open.host}/test/busybox:multi`, {
      cacheDir,
      signal: controller.signal,
      onLog: (line) => {
        if (line.startsWith('layer 2/2 sha256:')) controller.abort(reason);
      },
    });
    expect(await rejectionOf(pull)).toBe(reason);
    const digestHex = (await manifestDigest(images.layout, 'multi')).slice(7);
    expect(await readdir(cacheDir)).toEqual([`${digestHex}-r1.lock`]);

    const leftover = join(cacheDir, `${digestHex}-r1.tmp-crashed`);
    await mkdir(join(leftover, 'rootfs'), { recursive: true });
    const image = await pullImage(`${open.host}/test/busybox:multi`, { cacheDir });
    expect(image.cached).toBe(false);
    expect(await pathExists(leftover)).toBe(false);
  });

  it('stops at maxBytes', async () => {
    const err = await errorOf(
      pullImage(`${open.host}/test/busybox:multi`, { cacheDir: newCache(), maxBytes: 256 * 1024 }),
    );
    expect(err.code).toBe('TOO_LARGE');
  });

  describe('archives', () => {
    let archiveDir: string;
    beforeAll(async () => {
      archiveDir = join(tmp, 'archives');
      await mkdir(archiveDir);
      await writeArchive(images.layout, 'multi', join(archiveDir, 'multi.oci.tar'), 'oci-archive');
      await writeArchive(images.layout, 'multi', join(archiveDir, 'multi.docker.tar'), 'docker-archive');
      await cp(images.layout, join(archiveDir, 'layout'), { recursive: true });
    }, 120_000);

    it('imports an oci-archive tar with the same digest as the registry image', async () => {
      const image = await importImageArchive('oci-archive:multi.oci.tar', { cacheDir: newCache(), archiveDir });
      expect(image.digest).toBe(await manifestDigest(images.layout, 'multi'));
      expect(image.source).toBe('oci-archive:multi.oci.tar');
      await expectMultiRootfs(image);
    });

    it('imports a docker save tar, checking layers against the config’s diff ids', async () => {
      const image = await importImageArchive('docker-archive:multi.docker.tar', { cacheDir: newCache(), archiveDir });
      await expectMultiRootfs(image);
      // Detected from the content when given as a bare path, and found in the cache by its config digest.
      const cacheDir = join(tmp, 'cache-docker-archive');
      const first = await importImageArchive('multi.docker.tar', { cacheDir, archiveDir });
      expect(first.digest).toBe(image.digest);
      expect((await importImageArchive(join(archiveDir, 'multi.docker.tar'), { cacheDir, archiveDir })).cached).toBe(
        true,
      );
    });

    it('imports a tagged image from an OCI layout directory', async () => {
      const image = await importImageArchive('oci:layout:multi', { cacheDir: newCache(), archiveDir });
      await expectMultiRootfs(image);
      const ambiguous = await errorOf(importImageArchive('oci:layout', { cacheDir: newCache(), archiveDir }));
      expect(ambiguous.code).toBe('INVALID_REFERENCE');
      expect(ambiguous.message).toContain('multi');
    });

    it('reads archives only from inside the archive directory', async () => {
      const outsideFile = join(tmp, 'outside.tar');
      await writeArchive(images.layout, 'single', outsideFile, 'oci-archive');
      await symlink(outsideFile, join(archiveDir, 'sneaky.tar'));
      for (const ref of [
        'oci-archive:../outside.tar',
        `oci-archive:${outsideFile}`,
        'oci-archive:sneaky.tar',
        '../outside.tar',
      ]) {
        const err = await errorOf(importImageArchive(ref, { cacheDir: newCache(), archiveDir }));
        expect(err.code).toBe('PATH_ESCAPE');
      }
      const disabled = await errorOf(importImageArchive('oci-archive:multi.oci.tar', { cacheDir: newCache() }));
      expect(disabled.code).toBe('PATH_ESCAPE');
      expect(disabled.message).toMatch(/no archive directory/);
      const missing = await errorOf(importImageArchive('oci-archive:nope.tar', { cacheDir: newCache(), archiveDir }));
      expect(missing.code).toBe('NOT_FOUND');
    });

    it('fails on a tampered blob in an OCI layout', async () => {
      const layout = join(archiveDir, 'tampered');
      await cp(images.layout, layout, { recursive: true });
      const manifest = JSON.parse(
        await readFile(join(layout, 'blobs/sha256', (await manifestDigest(layout, 'multi')).slice(7)), 'utf8'),
      ) as { layers: Array<{ digest: string }> };
      const blob = join(layout, 'blobs/sha256', manifest.layers[0]!.digest.slice(7));
      const data = await readFile(blob);
      // Corrupt data near the end (the gzip stream breaks too): the digest check is what gets reported.
      data[data.length - 20]! ^= 0xff;
      await writeFile(blob, data);
      const err = await errorOf(importImageArchive('oci:tampered:multi', { cacheDir: newCache(), archiveDir }));
      expect(err.code).toBe('DIGEST_MISMATCH');
    });
  });
});

describe.runIf(isRoot)('hand-made docker save archives', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-oci-docker-archive-test-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

  /** A legacy `docker save` tar: `<id>/layer.tar` members, a repeated layer stored once behind a symlink. */
  async function writeDockerArchive(name: string, options: { configName?: (hex: string) => string } = {}) {
    const layer = writeTar([{ path: 'hello.txt', content: 'hello from a docker archive\n' }]);
    const diffId = `sha256:${sha(layer)}`;
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['FROM_ARCHIVE=1'], WorkingDir: '/srv' },
      rootfs: { type: 'layers', diff_ids: [diffId, diffId] },
    });
    const configName = options.configName?.(sha(config)) ?? `${sha(config)}.json`;
    const manifest = [
      { Config: configName, RepoTags: ['example/app:1'], Layers: ['aaa/layer.tar', 'bbb/layer.tar'] },
      { Config: configName, RepoTags: ['example/evil:1'], Layers: ['aaa/layer.tar', 'evil/layer.tar'] },
    ];
    const archive = writeTar([
      { path: 'manifest.json', content: JSON.stringify(manifest) },
      { path: configName, content: config },
      { path: 'aaa/layer.tar', content: layer },
      { path: 'bbb/layer.tar', type: 'symlink', linkPath: '../aaa/layer.tar' },
      { path: 'evil/layer.tar', type: 'symlink', linkPath: '../../../../../etc/passwd' },
    ]);
    await writeFile(join(dir, name), archive);
  }

  it('follows symlinked layers inside the archive and checks them against the diff ids', async () => {
    await writeDockerArchive('app.tar');
    const image = await importImageArchive('docker-archive:app.tar:example/app:1', {
      cacheDir: join(dir, 'cache'),
      archiveDir: dir,
    });
    expect(await readFile(join(image.rootfs, 'hello.txt'), 'utf8')).toBe('hello from a docker archive\n');
    expect(image.config).toEqual({ env: ['FROM_ARCHIVE=1'], workingDir: '/srv' });
    const ambiguous = await errorOf(
      importImageArchive('docker-archive:app.tar', { cacheDir: join(dir, 'cache'), archiveDir: dir }),
    );
    expect(ambiguous.code).toBe('INVALID_REFERENCE');
    expect(ambiguous.message).toContain('example/app:1');
  });

  it('never resolves a member symlink outside the archive', async () => {
    await writeDockerArchive('evil.tar');
    const err = await errorOf(
      importImageArchive('docker-archive:evil.tar:example/evil:1', { cacheDir: join(dir, 'cache'), archiveDir: dir }),
    );
    expect(err.code).toBe('INVALID_IMAGE');
    expect(err.message).toContain('evil/layer.tar');
  });

  it('refuses a config whose content does not match the digest it is named by', async () => {
    await writeDockerArchive('renamed.tar', {
      configName: (hex) => `${hex.replace(/^./, hex[0] === 'a' ? 'b' : 'a')}.json`,
    });
    const err = await errorOf(
      importImageArchive('docker-archive:renamed.tar:example/app:1', { cacheDir: join(dir, 'cache'), archiveDir: dir }),
    );
    expect(err.code).toBe('DIGEST_MISMATCH');
  });
});
