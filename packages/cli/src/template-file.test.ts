import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRequest, contextRelative, parseTemplateFile, planCopy } from './template-file.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-cli-tpl-'));
  await mkdir(join(dir, 'app', 'sub'), { recursive: true });
  await writeFile(join(dir, 'app', 'main.py'), 'print(1)\n');
  await writeFile(join(dir, 'app', 'sub', 'data.txt'), 'data\n');
  await symlink('main.py', join(dir, 'app', 'link.py'));
  await writeFile(join(dir, 'req.txt'), 'flask\n');
  await mkdir(join(dir, 'empty'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const parse = (v: unknown) => parseTemplateFile(JSON.stringify(v), 'warren.template.json');

describe('warren.template.json', () => {
  it('accepts a full file', () => {
    const t = parse({
      name: 'web-app',
      from: 'python:3.11',
      steps: [
        { copy: 'app/', to: '/app/', owner: 'root:root', mode: '0755' },
        { copy: ['req.txt', 'app'], to: '/srv/' },
        { run: 'pip install -r /srv/req.txt' },
        { env: { PORT: '8000', DEBUG: '0' } },
        { workdir: '/app' },
        { user: 'app' },
      ],
      start: 'python3 main.py',
      ready: { port: 8000, timeout: '30s', interval: 200 },
      cpu: 2,
      memoryMiB: 1024,
      diskGB: 5,
    });
    expect(t.steps).toHaveLength(6);
    expect(t.ready).toEqual({ port: 8000, timeout: 30_000, interval: 200 });
  });

  it('names the field of every mistake', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ from: 'base' }, /name: /],
      [{ name: 'bad name', from: 'base' }, /name: may contain letters/],
      [{ name: 'a', from: 'base', steps: [{}] }, /steps\[0\]: a step has exactly one of .* \(found none\)/],
      [{ name: 'a', from: 'base', steps: [{ run: 'x', env: { A: '1' } }] }, /steps\[0\]: .*found run, env/],
      [{ name: 'a', from: 'base', steps: [{ copy: 'x' }] }, /steps\[0\]: a copy step needs "to"/],
      [{ name: 'a', from: 'base', steps: [{ run: 'x', to: '/y' }] }, /belong to a copy step/],
      [{ name: 'a', from: 'base', steps: [{ copy: 'x', to: 'rel' }] }, /steps\[0\]\.to: must be an absolute path/],
      [{ name: 'a', from: 'base', steps: [{ copy: 'x', to: '/y', mode: '999' }] }, /mode: must be an octal mode/],
      [{ name: 'a', from: 'base', steps: [{ env: { '1BAD': 'x' } }] }, /steps\[0\]\.env\.1BAD: /],
      [{ name: 'a', from: 'base', steps: [{ rum: 'typo' }] }, /steps\[0\]: .*rum/],
      [{ name: 'a', from: 'base', ready: { port: 80 } }, /ready: "ready" needs "start"/],
      [{ name: 'a', from: 'base', start: 'x', ready: { port: 80, url: 'http://x/' } }, /exactly one of port/],
      [
        { name: 'a', from: 'base', start: 'x', ready: { port: 80, timeout: 'soon' } },
        /ready\.timeout: invalid duration/,
      ],
      [{ name: 'a', from: 'base', extra: 1 }, /extra/],
    ];
    for (const [value, message] of cases) expect(() => parse(value), JSON.stringify(value)).toThrow(message);
    expect(() => parseTemplateFile('{', 'f.json')).toThrow(/f\.json is not valid JSON/);
  });
});

describe('copy sources', () => {
  it('stay inside the build directory', () => {
    expect(contextRelative(dir, 'app/')).toBe('app');
    expect(contextRelative(dir, './app/sub/../main.py')).toBe('app/main.py');
    expect(() => contextRelative(dir, '../etc')).toThrow(/outside the build directory/);
    expect(() => contextRelative(dir, 'app/../../x')).toThrow(/outside the build directory/);
    expect(() => contextRelative(dir, '.')).toThrow(/name what to copy/);
    expect(() => contextRelative(dir, '/etc/passwd')).toThrow(/relative to the build directory/);
    expect(() => contextRelative(dir, 'a,b')).toThrow(/comma/);
  });

  it('are planned with a content hash that ignores mtimes and follows content, mode and layout', async () => {
    const step = { copy: 'app/', to: '/app/' };
    const a = await planCopy(dir, step);
    expect(a).toMatchObject({ sources: ['app'], files: 2, bytes: 14 });
    // A directory source contributes its children, not its own entry; symlinks are kept as links.
    expect(a.tarRoots).toEqual(['app/link.py', 'app/main.py', 'app/sub']);
    expect(a.filesHash).toMatch(/^[0-9a-f]{64}$/);
    // Same content, touched: same hash.
    await writeFile(join(dir, 'app', 'main.py'), 'print(1)\n');
    expect((await planCopy(dir, step)).filesHash).toBe(a.filesHash);
    // Content, mode or destination changes: new hash.
    await writeFile(join(dir, 'app', 'main.py'), 'print(2)\n');
    const b = await planCopy(dir, step);
    expect(b.filesHash).not.toBe(a.filesHash);
    await chmod(join(dir, 'app', 'main.py'), 0o700);
    expect((await planCopy(dir, step)).filesHash).not.toBe(b.filesHash);
    expect((await planCopy(dir, { copy: 'app/', to: '/other/' })).filesHash).not.toBe(
      (await planCopy(dir, step)).filesHash,
    );
  });

  it('refuse missing and empty sources', async () => {
    await expect(planCopy(dir, { copy: 'missing', to: '/x' })).rejects.toThrow(/does not exist/);
    await expect(planCopy(dir, { copy: 'empty', to: '/x' })).rejects.toThrow(/empty directory/);
  });
});

describe('build request', () => {
  it('maps the file to the wire body of POST /v1/templates/build', async () => {
    const t = parse({
      name: 'web',
      from: 'base',
      steps: [
        { copy: ['app', 'req.txt'], to: '/srv/', owner: 'app:app', mode: '0644' },
        { run: 'echo hi' },
        { env: { A: '1', B: 'two words' } },
        { workdir: '/srv' },
        { user: 'app' },
      ],
      start: 'python3 -m http.server 8000',
      ready: { process: 'python3', timeout: '1m' },
      memoryMiB: 512,
    });
    const plan = await planCopy(dir, t.steps[0]!);
    const body = buildRequest(t, new Map([[0, plan]]), { skipCache: true });
    expect(body).toEqual({
      name: 'web',
      from_image: 'base',
      steps: [
        {
          type: 'COPY',
          args: ['app,req.txt', '/srv/'],
          filesHash: plan.filesHash,
          owner: 'app:app',
          permissions: '0644',
        },
        { type: 'RUN', args: ['echo hi'] },
        { type: 'ENV', args: ['A', '1'] },
        { type: 'ENV', args: ['B', 'two words'] },
        { type: 'WORKDIR', args: ['/srv'] },
        { type: 'USER', args: ['app'] },
      ],
      memory: 512,
      skipCache: true,
      update: false,
      startCmd: 'python3 -m http.server 8000',
      readyCmd: { type: 'process', name: 'python3', timeout: 60_000 },
    });
    expect(buildRequest(t, new Map([[0, plan]]), { name: 'renamed', update: true })).toMatchObject({
      name: 'renamed',
      update: true,
      skipCache: false,
    });
  });
});
