import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Sandbox, Template, TemplateBuildError, waitForPort } from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cp } from './client.ts';
import { sandboxCgroups } from './leaks.ts';
import { buildTestImages, pushImage, startRegistry, type TestRegistry, writeArchive, writeTar } from './oci-fixture.ts';

const ctx = inject('warren');
const opts = { baseURL: ctx.baseURL, apiKey: ctx.apiKey };

/** Keys the Python SDK's dataclasses accept (PROTOCOL §5.6); any other key raises TypeError there. */
const BUILD_RESPONSE_KEYS = ['build_id', 'template_id', 'status', 'logs_url', 'request_id'];
const BUILD_STATUS_KEYS = [
  'build_id',
  'template_id',
  'status',
  'progress',
  'started_at',
  'current_step',
  'completed_at',
  'error_message',
  'build_duration_ms',
  'request_id',
];

interface BuildStatus {
  build_id: string;
  template_id: string;
  status: string;
  progress: number;
  started_at: string;
  build_duration_ms?: number;
  error_message?: string;
}

/** Polls a build to its end over the raw API; returns the final status and the whole log. */
async function waitForBuild(id: string): Promise<{ status: BuildStatus; logs: string }> {
  let logs = '';
  let offset = 0;
  for (;;) {
    const l = await cp<{ logs: string; offset: number; complete: boolean }>(
      'GET',
      `/v1/templates/build/${id}/logs?offset=${offset}`,
    );
    expect(l.status).toBe(200);
    logs += l.body.logs;
    offset = l.body.offset;
    if (l.body.complete) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const s = await cp<BuildStatus>('GET', `/v1/templates/build/${id}/status`);
  expect(s.status).toBe(200);
  return { status: s.body, logs };
}

/** Uploads a build-context tarball the way the SDKs do: upload link, then an unauthenticated PUT. */
async function upload(tarGz: Buffer): Promise<string> {
  const hash = createHash('sha256').update(tarGz).digest('hex');
  const link = await cp<{ present: boolean; upload_url?: string }>('POST', '/v1/templates/files/upload-link', {
    files_hash: hash,
    content_length: tarGz.length,
  });
  expect(link.status).toBe(200);
  if (!link.body.present) {
    const put = await fetch(link.body.upload_url as string, {
      method: 'PUT',
      headers: { 'content-type': 'application/gzip' },
      body: tarGz,
    });
    expect(put.status).toBe(200);
  }
  return hash;
}

async function sandboxToken(id: string): Promise<string> {
  const r = await cp<{ auth_token: string }>('POST', `/v1/sandboxes/${id}/token/refresh`);
  expect(r.status).toBe(200);
  return r.body.auth_token;
}

async function runIn(id: string, command: string): Promise<{ stdout: string; exit_code: number }> {
  const token = await sandboxToken(id);
  const res = await fetch(`${ctx.baseURL}/commands/run`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ command, timeout: 30 }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { stdout: string; exit_code: number };
}

describe('template builds through the official @hopx-ai/sdk (PROTOCOL §15 step 46–47)', () => {
  let contextDir: string;
  const run = Date.now().toString(36);
  const name = `webapp-${run}`;
  const logs: string[] = [];
  let templateID = '';
  let firstDurationMs = 0;

  const template = (marker: string) =>
    new Template()
      .fromPythonImage('3.11')
      .copy('app/', '/app/')
      .runCmd(`echo built > /app/built.txt && echo ${run} > /app/run.txt && ${marker}`)
      .setEnv('GREETING', 'hello-template')
      .setWorkdir('/app')
      .setStartCmd('python3 -m http.server 8000', waitForPort(8000));

  beforeAll(async () => {
    contextDir = await mkdtemp(join(tmpdir(), 'warren-tpl-'));
    await mkdir(join(contextDir, 'app'));
    await writeFile(join(contextDir, 'app/index.html'), '<h1>warren template app</h1>\n');
    await writeFile(join(contextDir, 'app/main.py'), 'print("hello from the app")\n');
  });

  afterAll(async () => {
    await rm(contextDir, { recursive: true, force: true });
    if (templateID) await Sandbox.deleteTemplate(templateID, opts).catch(() => undefined);
  });

  it('builds to active; a sandbox from it serves port 8000 through the preview path', async () => {
    const result = await Template.build(template('true'), {
      name,
      ...opts,
      contextPath: contextDir,
      onLog: (e) => logs.push(e.message),
    });
    templateID = result.templateID;
    expect(typeof result.templateID).toBe('string');
    const info = await cp<{ status: string; is_active: boolean; name: string }>('GET', `/v1/templates/${templateID}`);
    expect(info.body).toMatchObject({ status: 'active', is_active: true, name });
    const first = await cp<BuildStatus>('GET', `/v1/templates/build/${result.buildID}/status`);
    firstDurationMs = first.body.build_duration_ms ?? 0;
    expect(firstDurationMs).toBeGreaterThan(0);
    expect(logs.join('\n')).toMatch(/step 1\/4 COPY app\/ \/app\/: (building|CACHED)/);

    const vm = await result.createVM({ envVars: { Q: '1' } });
    try {
      // Handed out only after the readiness check: the server answers at once.
      const token = await sandboxToken(vm.vmID);
      const page = await fetch(`${ctx.baseURL}/sandboxes/${vm.vmID}/ports/8000/index.html`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(page.status).toBe(200);
      expect(await page.text()).toBe('<h1>warren template app</h1>\n');
      const inside = await runIn(
        vm.vmID,
        'cat /app/built.txt; echo "$GREETING $Q"; pwd; python --version; ls /app | tr "\\n" " "',
      );
      expect(inside.stdout).toBe('built\nhello-template 1\n/app\nPython 3.11.2\nbuilt.txt index.html main.py run.txt ');
    } finally {
      await vm.delete();
    }
  }, 600_000);

  it('a rebuild reuses every cached layer and finishes faster; changing the last step rebuilds only it', async () => {
    const rebuildLogs: string[] = [];
    const again = await Template.build(template('true'), {
      name,
      ...opts,
      update: true,
      contextPath: contextDir,
      onLog: (e) => rebuildLogs.push(e.message),
    });
    expect(again.templateID).toBe(templateID);
    const text = rebuildLogs.join('\n');
    expect(text).toMatch(/step 1\/4 COPY app\/ \/app\/: CACHED/);
    expect(text).toMatch(/step 2\/4 RUN echo built > \/app\/built.txt .* && true: CACHED/);
    expect(text).toContain('0 layer(s) built, 2 cached');
    const status = await cp<BuildStatus>('GET', `/v1/templates/build/${again.buildID}/status`);
    expect(status.body.build_duration_ms).toBeLessThan(firstDurationMs);

    const changedLogs: string[] = [];
    await Template.build(template(`echo changed-${run} > /app/changed.txt`), {
      name,
      ...opts,
      update: true,
      contextPath: contextDir,
      onLog: (e) => changedLogs.push(e.message),
    });
    const changed = changedLogs.join('\n');
    expect(changed).toMatch(/step 1\/4 COPY app\/ \/app\/: CACHED/);
    expect(changed).toMatch(/step 2\/4 RUN .*changed.*: building/);
    expect(changed).toContain('1 layer(s) built, 1 cached');
  }, 300_000);

  it('a failing RUN step makes Template.build throw TemplateBuildError with the failing lines', async () => {
    const failing = new Template('base').runCmd(`echo "about to fail ${run}" && exit 4`);
    const err = await Template.build(failing, { name: `${name}-fails`, ...opts, contextPath: contextDir }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TemplateBuildError);
    expect((err as Error).message).toContain('RUN failed with exit status 4');
    const failedId = (err as TemplateBuildError & { templateId?: string }).message.match(/Template ID: (\d+)/)?.[1];
    if (failedId) await Sandbox.deleteTemplate(failedId, opts);
  }, 120_000);

  it('deleteTemplate removes it and frees the name', async () => {
    const del = await Sandbox.deleteTemplate(templateID, opts);
    expect(del).toBeDefined();
    expect((await cp('GET', `/v1/templates/${templateID}`)).status).toBe(404);
    expect((await cp('GET', `/v1/templates/${name}`)).status).toBe(404);
    const listed = await cp<{ data: Array<{ name: string }> }>('GET', '/v1/templates');
    expect(listed.body.data.map((t) => t.name)).not.toContain(name);
    templateID = '';
    // Built-in templates cannot be deleted.
    expect((await cp('DELETE', '/v1/templates/base')).status).toBe(403);
  });
});

describe('template build API as the Python SDK sees it', () => {
  const suffix = Date.now().toString(36);
  const created: string[] = [];

  afterAll(async () => {
    for (const id of created) await cp('DELETE', `/v1/templates/${id}`);
  });

  async function startBuild(body: Record<string, unknown>): Promise<string> {
    const r = await cp<Record<string, unknown>>('POST', '/v1/templates/build', body);
    expect(r.status).toBe(201);
    // Exactly the dataclass's keys, IDs as strings.
    for (const key of Object.keys(r.body)) expect(BUILD_RESPONSE_KEYS).toContain(key);
    expect(typeof r.body.build_id).toBe('string');
    expect(typeof r.body.template_id).toBe('string');
    expect(r.body.status).toBe('building');
    expect(typeof r.body.logs_url).toBe('string');
    created.push(r.body.template_id as string);
    return r.body.build_id as string;
  }

  it('a failing RUN step ends the build failed, with the command output in the logs and strict status keys', async () => {
    const id = await startBuild({
      name: `fails-${suffix}`,
      from_image: 'base',
      steps: [
        { type: 'ENV', args: ['WHO', 'warren'] },
        { type: 'RUN', args: ['echo "about to fail as $WHO"; ls /no-such-dir; exit 3'] },
      ],
      startCmd: null,
      readyCmd: null,
    });
    const { status, logs } = await waitForBuild(id);
    for (const key of Object.keys(status)) expect(BUILD_STATUS_KEYS).toContain(key);
    expect(status).toMatchObject({ build_id: id, template_id: id, status: 'failed' });
    expect(typeof status.progress).toBe('number');
    expect(typeof status.started_at).toBe('string');
    expect(status.error_message).toContain('exit status 3');
    expect(logs).toContain('about to fail as warren');
    expect(logs).toContain('/no-such-dir');
    expect(logs).toContain('ERROR: RUN failed with exit status 3');
    const t = await cp<{ status: string; is_active: boolean }>('GET', `/v1/templates/${id}`);
    expect(t.body).toMatchObject({ status: 'failed', is_active: false });
  }, 120_000);

  it('refuses a taken name without update (409) and a bad request (400)', async () => {
    const name = `taken-${suffix}`;
    await startBuild({ name, from_image: 'base', steps: [{ type: 'RUN', args: ['true'] }] });
    const again = await cp('POST', '/v1/templates/build', { name, from_image: 'base', steps: [] });
    expect(again.status).toBe(409);
    expect((await cp('POST', '/v1/templates/build', { name: 'base', from_image: 'base' })).status).toBe(409);
    expect((await cp('POST', '/v1/templates/build', { name: `x-${suffix}`, steps: [] })).status).toBe(400);
    const noHash = await cp('POST', '/v1/templates/build', {
      name: `x-${suffix}`,
      from_image: 'base',
      steps: [{ type: 'COPY', args: ['a', '/a'] }],
    });
    expect(noHash.status).toBe(400);
    expect(
      (await cp('POST', '/v1/templates/files/upload-link', { files_hash: '../x', content_length: 1 })).status,
    ).toBe(400);
  }, 120_000);

  it('rejects a COPY tarball with a ../ entry, and an upload without a valid signed link', async () => {
    const tarGz = gzipSync(
      writeTar([
        { path: 'app/ok.txt', content: 'fine\n' },
        { path: 'app/../../evil.txt', content: 'escaped\n' },
      ]),
    );
    const hash = await upload(tarGz);
    const id = await startBuild({
      name: `escape-${suffix}`,
      from_image: 'base',
      steps: [{ type: 'COPY', args: ['app/', '/app/'], filesHash: hash }],
    });
    const { status, logs } = await waitForBuild(id);
    expect(status.status).toBe('failed');
    expect(logs).toMatch(/COPY: tarball entry 'app\/\.\.\/\.\.\/evil\.txt' escapes the build context/);

    const other = createHash('sha256').update('other').digest('hex');
    const forged = await fetch(
      `${ctx.baseURL}/v1/templates/files/upload/${other}?length=5&expires=${Date.now() + 60_000}&signature=AAAA`,
      { method: 'PUT', body: 'hello' },
    );
    expect(forged.status).toBe(403);
    const link = await cp<{ upload_url: string }>('POST', '/v1/templates/files/upload-link', {
      files_hash: other,
      content_length: 5,
    });
    const tooBig = await fetch(link.body.upload_url, { method: 'PUT', body: 'more than five bytes' });
    expect(tooBig.status).toBe(413);
    const present = await cp<{ present: boolean }>('POST', '/v1/templates/files/upload-link', {
      files_hash: other,
      content_length: 5,
    });
    expect(present.body.present).toBe(false);
  }, 120_000);

  it('Python-dialect ENV/WORKDIR/USER/CMD steps end up in the template; CMD becomes the start command', async () => {
    const id = await startBuild({
      name: `pydialect-${suffix}`,
      from_image: 'base',
      steps: [
        { type: 'ENV', args: ['MODE', 'py'] },
        { type: 'WORKDIR', args: ['/srv/app'] },
        { type: 'RUN', args: ['echo "$MODE" > mode.txt && useradd -m -u 1000 app'] },
        { type: 'USER', args: ['app'] },
        { type: 'WORKDIR', args: ['/home/app'] },
        { type: 'RUN', args: ['id -un > who.txt && echo "$MODE" >> who.txt'] },
        { type: 'USER', args: ['root'] },
        { type: 'WORKDIR', args: ['/srv/app'] },
        { type: 'CMD', args: ['python3 -m http.server 8100'] },
      ],
      startCmd: null,
      readyCmd: null,
    });
    expect((await waitForBuild(id)).status.status).toBe('active');
    const sb = await cp<{ id: string }>('POST', '/v1/sandboxes', { template_id: id });
    expect(sb.status).toBe(201);
    try {
      const out = await runIn(
        sb.body.id,
        'pwd; cat mode.txt; echo "$MODE"; sleep 1; ps -eo args | grep -c "^python3 -m [h]ttp.server 8100"; ' +
          'cat /home/app/who.txt; stat -c %U /home/app/who.txt',
      );
      expect(out.stdout).toBe('/srv/app\npy\npy\n1\napp\npy\napp\n');
    } finally {
      await cp('DELETE', `/v1/sandboxes/${sb.body.id}`);
    }
    const unknown = await startBuild({
      name: `nouser-${suffix}`,
      from_image: 'base',
      steps: [
        { type: 'USER', args: ['nobody-here'] },
        { type: 'RUN', args: ['true'] },
      ],
    });
    const failed = await waitForBuild(unknown);
    expect(failed.status.status).toBe('failed');
    expect(failed.status.error_message).toBe("USER nobody-here: no such user in the image's /etc/passwd");
  }, 120_000);

  it("node:20 resolves to Debian 12 with the server's own Node.js 20 and npm (no registry reachable)", async () => {
    const id = await startBuild({
      name: `node20-${suffix}`,
      from_image: 'node:20',
      steps: [
        { type: 'RUN', args: ['node -e "console.log(process.version)" > /node-version; npm --version > /npm-version'] },
      ],
    });
    const { status, logs } = await waitForBuild(id);
    expect(status.status, logs).toBe('active');
    expect(logs).toContain("using Warren's Debian-built equivalent of node:20");
    const sb = await cp<{ id: string }>('POST', '/v1/sandboxes', { template_id: id });
    expect(sb.status).toBe(201);
    try {
      const out = await runIn(sb.body.id, 'cat /node-version; grep -c bookworm /etc/os-release');
      expect(out.stdout).toMatch(/^v20\.\d+\.\d+\n[1-9]\d*\n$/);
    } finally {
      await cp('DELETE', `/v1/sandboxes/${sb.body.id}`);
    }
  }, 300_000);

  it('a start command that dies before its readiness check passes fails the create, leaving nothing behind', async () => {
    const id = await startBuild({
      name: `badstart-${suffix}`,
      from_image: 'base',
      steps: [{ type: 'RUN', args: ['true'] }],
      startCmd: 'echo starting; exit 7',
      readyCmd: { type: 'port', port: 9, timeout: 20_000, interval: 100 },
    });
    expect((await waitForBuild(id)).status.status).toBe('active');
    const before = await cp<{ data: Array<{ id: string }> }>('GET', '/v1/sandboxes?limit=100');
    const sb = await cp<{ message: string }>('POST', '/v1/sandboxes', { template_id: id });
    expect(sb.status).toBe(500);
    // The failed sandbox is reported as `error`, and none of its runtime is left.
    const after = await cp<{ data: Array<{ id: string; status: string }> }>('GET', '/v1/sandboxes?limit=100');
    const known = new Set(before.body.data.map((s) => s.id));
    const failed = after.body.data.filter((s) => !known.has(s.id));
    expect(failed.map((s) => s.status)).toEqual(['error']);
    expect(await sandboxCgroups(ctx.cgroupParent)).not.toContain(failed[0]?.id);
  }, 120_000);
});

describe('OCI base images: a local registry and an archive', () => {
  let registry: TestRegistry;
  let dir: string;
  const suffix = Date.now().toString(36);
  const created: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-oci-e2e-'));
    registry = await startRegistry();
    const images = await buildTestImages(dir);
    await pushImage(images.layout, images.tags.multi, `${registry.host}/warren/busybox:1`);
    await mkdir(join(ctx.dataDir, 'images'), { recursive: true });
    await writeArchive(images.layout, images.tags.single, join(dir, 'busybox.tar'), 'oci-archive');
    await copyFile(join(dir, 'busybox.tar'), join(ctx.dataDir, 'images', 'busybox.tar'));
  }, 180_000);

  afterAll(async () => {
    for (const id of created) await cp('DELETE', `/v1/templates/${id}`);
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function buildFrom(fromImage: string, name: string): Promise<string> {
    const r = await cp<{ build_id: string }>('POST', '/v1/templates/build', {
      name,
      from_image: fromImage,
      steps: [{ type: 'RUN', args: ['echo "built on $GREETING" > /work/built.txt'] }],
    });
    expect(r.status).toBe(201);
    created.push(r.body.build_id);
    const { status, logs } = await waitForBuild(r.body.build_id);
    expect(status.status, logs).toBe('active');
    return r.body.build_id;
  }

  it('pulls an image from the registry on 127.0.0.1 and runs a sandbox from it', async () => {
    const id = await buildFrom(`${registry.host}/warren/busybox:1`, `oci-${suffix}`);
    const sb = await cp<{ id: string }>('POST', '/v1/sandboxes', { template_id: id });
    expect(sb.status).toBe(201);
    try {
      const out = await runIn(
        sb.body.id,
        'cat /work/built.txt; pwd; cat /etc/layer2.txt; test -e /etc/motd || echo motd-removed; busybox | head -1 | cut -c1-7',
      );
      expect(out.stdout).toBe('built on hello-from-oci\n/work\nfrom layer 2\nmotd-removed\nBusyBox\n');
    } finally {
      await cp('DELETE', `/v1/sandboxes/${sb.body.id}`);
    }
  }, 180_000);

  it('imports the same image from an OCI archive on the server', async () => {
    const id = await buildFrom(`oci-archive:${join(ctx.dataDir, 'images', 'busybox.tar')}`, `ociarchive-${suffix}`);
    const sb = await cp<{ id: string }>('POST', '/v1/sandboxes', { template_id: id });
    expect(sb.status).toBe(201);
    try {
      const out = await runIn(sb.body.id, 'cat /work/built.txt; cat /etc/motd');
      expect(out.stdout).toBe('built on hello-from-oci\nwelcome\n');
    } finally {
      await cp('DELETE', `/v1/sandboxes/${sb.body.id}`);
    }
  }, 180_000);

  it('an image that cannot be resolved fails the build with a clear message', async () => {
    const r = await cp<{ build_id: string }>('POST', '/v1/templates/build', {
      name: `missing-${suffix}`,
      from_image: `${registry.host}/warren/nothing:here`,
      steps: [],
    });
    created.push(r.body.build_id);
    const { status, logs } = await waitForBuild(r.body.build_id);
    expect(status.status).toBe('failed');
    expect(logs).toMatch(/ERROR: .*nothing/);
    const unknown = await cp<{ build_id: string }>('POST', '/v1/templates/build', {
      name: `unknown-${suffix}`,
      from_image: 'ubuntu:22.04',
      steps: [],
    });
    created.push(unknown.body.build_id);
    const u = await waitForBuild(unknown.body.build_id);
    expect(u.status.status).toBe('failed');
    expect(u.logs).toContain("cannot resolve base image 'ubuntu:22.04'");
  }, 120_000);
});
