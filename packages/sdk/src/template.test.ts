import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TemplateBuildError } from './errors.ts';
import type { Fetch } from './internal/http.ts';
import { type BuildEvent, Template, waitForCommand, waitForURL } from './template.ts';

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A stand-in build API: answers by path, records every request. */
function buildAPI(final: 'active' | 'failed') {
  const requests: Array<{ method: string; url: URL; body: unknown; headers: Headers }> = [];
  let polls = 0;
  const fetch: Fetch = async (input, init) => {
    const url = new URL(String(input));
    const raw = init?.body;
    const body = typeof raw === 'string' ? JSON.parse(raw) : raw instanceof Uint8Array ? raw : undefined;
    requests.push({ method: init?.method ?? 'GET', url, body, headers: new Headers(init?.headers) });
    const p = url.pathname;
    if (p === '/v1/templates/files/upload-link') return json(200, { present: false, upload_url: '/uploads/abc' });
    if (p === '/uploads/abc') return new Response(null, { status: 200 });
    if (p === '/v1/templates/build') {
      return json(201, { build_id: '9', template_id: '9', status: 'building', logs_url: '/x' });
    }
    if (p === '/v1/templates/build/9/logs') {
      const offset = Number(url.searchParams.get('offset'));
      const text = offset === 0 ? 'step 1/2 COPY\n' : polls > 1 ? 'step 2/2 RUN\n' : '';
      return json(200, { logs: text, offset: offset + text.length, status: 'building', complete: false });
    }
    if (p === '/v1/templates/build/9/status') {
      polls++;
      const done = polls >= 3;
      return json(200, {
        build_id: '9',
        template_id: '9',
        status: done ? final : 'building',
        progress: done ? 100 : polls * 30,
        started_at: '2026-01-01T00:00:00Z',
        ...(done && final === 'failed' ? { error_message: 'RUN failed with exit status 3' } : {}),
      });
    }
    if (p === '/v1/templates/9') {
      return json(200, { id: '9', name: 'web', display_name: 'web', status: 'active', is_active: true });
    }
    return json(404, { code: 'NOT_FOUND', message: `no route ${p}` });
  };
  return { fetch, requests };
}

describe('Template.build over an injected fetch', () => {
  let context: string;

  beforeAll(async () => {
    context = await mkdtemp(join(tmpdir(), 'warren-tpl-unit-'));
    await mkdir(join(context, 'app'));
    await writeFile(join(context, 'app/main.py'), 'print(1)\n');
  });

  afterAll(async () => {
    await rm(context, { recursive: true, force: true });
  });

  it('uploads COPY sources, sends every step in the wire dialect, and reports log and progress', async () => {
    const api = buildAPI('active');
    const tpl = Template.fromImage('base')
      .copy('app/', '/app/', { permissions: '0755' })
      .run('pip install x')
      .env({ A: '1' })
      .workdir('/app')
      .user('root')
      .startCmd('python3 -m http.server 8000', waitForURL('http://127.0.0.1:8000/'));
    const events: BuildEvent[] = [];
    const build = Template.build(tpl, {
      name: 'web',
      apiKey: 'k',
      baseURL: 'http://warren.test',
      fetch: api.fetch,
      contextDir: context,
      memoryMiB: 1024,
      pollIntervalMs: 1,
    });
    for await (const e of build) events.push(e);
    expect(await build).toMatchObject({ templateId: '9', status: 'active', isActive: true });

    const link = api.requests.find((r) => r.url.pathname.endsWith('/upload-link'));
    const put = api.requests.find((r) => r.url.pathname === '/uploads/abc');
    if (!link || !put) throw new Error('no upload link or upload request');
    expect(put.method).toBe('PUT');
    expect(put.headers.get('x-api-key')).toBeNull(); // the upload URL carries its own authorization
    const tar = gunzipSync(put.body as Uint8Array);
    expect(link.body).toEqual({
      files_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      content_length: (put.body as Uint8Array).length,
    });
    // ustar entries named relative to the context.
    expect(tar.subarray(0, 4).toString()).toBe('app/');
    expect(tar.toString('latin1')).toContain('app/main.py');
    expect(tar.toString('latin1')).toContain('print(1)');

    const started = api.requests.find((r) => r.url.pathname === '/v1/templates/build');
    expect(started?.body).toEqual({
      name: 'web',
      from_image: 'base',
      steps: [
        {
          type: 'COPY',
          args: ['app/', '/app/'],
          permissions: '0755',
          filesHash: (link.body as { files_hash: string }).files_hash,
        },
        { type: 'RUN', args: ['pip install x'] },
        { type: 'ENV', args: ['A', '1'] },
        { type: 'WORKDIR', args: ['/app'] },
        { type: 'USER', args: ['root'] },
      ],
      cpu: 2,
      memory: 1024,
      diskGB: 10,
      skipCache: false,
      update: false,
      startCmd: 'python3 -m http.server 8000',
      readyCmd: { type: 'url', url: 'http://127.0.0.1:8000/' },
    });
    const logs = events.flatMap((e) => (e.type === 'log' ? [e.text] : [])).join('');
    expect(logs).toContain('step 1/2 COPY\n');
    expect(logs).toContain('step 2/2 RUN\n');
    expect(events.filter((e) => e.type === 'progress').map((e) => (e.type === 'progress' ? e.percent : -1))).toEqual([
      30, 60, 100,
    ]);
  });

  it('a failed build rejects with TemplateBuildError carrying the log', async () => {
    const api = buildAPI('failed');
    const tpl = Template.fromImage('base').run('exit 3').startCmd('true', waitForCommand('true'));
    const err = await Template.build(tpl, {
      name: 'web',
      apiKey: 'k',
      baseURL: 'http://warren.test',
      fetch: api.fetch,
      pollIntervalMs: 1,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TemplateBuildError);
    expect((err as Error).message).toContain('RUN failed with exit status 3');
    expect((err as TemplateBuildError).logs).toContain('step 1/2 COPY');
  });
});
