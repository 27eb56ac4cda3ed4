import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BuildEvent,
  Sandbox,
  Template,
  TemplateBuildError,
  TemplateNotFoundError,
  waitForPort,
} from '@warren/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const ctx = inject('warren');
const conn = { baseURL: ctx.baseURL, apiKey: ctx.apiKey };

describe('@warren/sdk Template builder against the build API', () => {
  let contextDir: string;
  const run = Date.now().toString(36);
  const name = `sdk-tpl-${run}`;
  const built: string[] = [];

  beforeAll(async () => {
    contextDir = await mkdtemp(join(tmpdir(), 'warren-sdk-tpl-'));
    await mkdir(join(contextDir, 'site'));
    await writeFile(join(contextDir, 'site/index.html'), '<h1>built by the sdk</h1>\n');
  });

  afterAll(async () => {
    await rm(contextDir, { recursive: true, force: true });
    for (const id of built) await Template.delete(id, conn).catch(() => undefined);
  });

  it('lists and gets the built-in templates', async () => {
    const all = await Template.list(conn);
    expect(all.map((t) => t.name)).toEqual(expect.arrayContaining(['base', 'code-interpreter']));
    const base = await Template.get('base', conn);
    expect(base).toMatchObject({ name: 'base', status: 'active', isActive: true });
    await expect(Template.get(`missing-${run}`, conn)).rejects.toBeInstanceOf(TemplateNotFoundError);
  });

  it('builds with progress events and log, and a sandbox from it serves its start command', async () => {
    const tpl = Template.fromImage('base')
      .copy('site/', '/srv/site/')
      .run(`echo ${run} > /srv/site/run.txt`)
      .env({ GREETING: 'from-template' })
      .workdir('/srv/site')
      .startCmd('python3 -m http.server 8000', waitForPort(8000));
    const events: BuildEvent[] = [];
    const progress: number[] = [];
    const build = Template.build(tpl, {
      ...conn,
      name,
      contextDir,
      cpu: 1,
      memoryMiB: 512,
      diskGiB: 1,
      pollIntervalMs: 300,
      onProgress: (_status, percent) => progress.push(percent),
    });
    for await (const e of build) events.push(e);
    const info = await build;
    built.push(info.templateId);
    expect(info).toMatchObject({ name, status: 'active', isActive: true });

    const logText = events
      .filter((e): e is Extract<BuildEvent, { type: 'log' }> => e.type === 'log')
      .map((e) => e.text)
      .join('');
    expect(logText).toContain('COPY site/ /srv/site/');
    const statuses = events.filter((e) => e.type === 'progress').map((e) => e.status);
    expect(statuses.at(-1)).toBe('active');
    expect(progress.at(-1)).toBe(100);

    const sb = await Sandbox.create({ ...conn, template: name });
    try {
      const inside = await sb.commands.run('cat /srv/site/run.txt; echo "$GREETING"; pwd');
      expect(inside.stdout).toBe(`${run}\nfrom-template\n/srv/site\n`);
      const page = await fetch(sb.getHost(8000), { headers: { authorization: `Bearer ${sb.accessToken}` } });
      expect(await page.text()).toBe('<h1>built by the sdk</h1>\n');
    } finally {
      await sb.kill();
    }
  });

  it('a failing step rejects with TemplateBuildError carrying the log', async () => {
    const tpl = Template.fromImage('base').run('echo about-to-fail; exit 3');
    const err = await Template.build(tpl, { ...conn, name: `${name}-bad`, pollIntervalMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TemplateBuildError);
    expect((err as TemplateBuildError).logs).toContain('about-to-fail');
    const failed = await Template.get(`${name}-bad`, conn).catch(() => undefined);
    if (failed) built.push(failed.templateId);
  });

  it('deletes a template it built', async () => {
    const id = built.shift();
    expect(id).toBeDefined();
    await Template.delete(id as string, conn);
    await expect(Template.get(id as string, conn)).rejects.toBeInstanceOf(TemplateNotFoundError);
  });
});
