import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Sandbox, Template, TemplateBuildError, waitForPort } from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cp } from './client.ts';
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
  const name = `webapp-${Date.now().toString(36)}`;
  const logs: string[] = [];
  let templateID = '';
  let firstDurationMs = 0;

  const template = (marker: string) =>
    new Template()
      .fromPythonImage('3.11')
      .copy('app/', '/app/')
      .runCmd(`echo built > /app/built.txt && ${marker}`)
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
      const inside = await runIn(vm.vmID, 'cat /app/built.txt; echo "$GREETING $Q"; pwd; python --version');
      expect(inside.stdout).toBe('built\nhello-template 1\n/app\nPython 3.11.2\n');
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
    expect(text).toMatch(/step 2\/4 RUN echo built > \/app\/built.txt && true: CACHED/);
    expect(text).toContain('0 layer(s) built, 2 cached');
    const status = await cp<BuildStatus>('GET', `/v1/templates/build/${again.buildID}/status`);
    expect(status.body.build_duration_ms).toBeLessThan(firstDurationMs);

    const changedLogs: string[] = [];
    await Template.build(template('echo changed > /app/changed.txt'), {
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
