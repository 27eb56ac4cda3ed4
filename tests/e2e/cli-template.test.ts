import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { warren } from './cli.ts';
import { cp } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');
const NAME = `cli-e2e-${process.pid}`;
const FAILING = `cli-e2e-fail-${process.pid}`;

interface Template {
  id: string;
  name: string;
  status: string;
}

async function templates(): Promise<Template[]> {
  const r = await warren(['template', 'ls', '--json']);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Template[];
}

describe('warren template (real binary, real build API)', () => {
  let dir: string;
  const sandboxes: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-cli-template-'));
    await mkdir(join(dir, 'app', 'static'), { recursive: true });
    await writeFile(join(dir, 'app', 'hello.txt'), 'hello from the build directory\n');
    await writeFile(join(dir, 'app', 'static', 'index.html'), '<h1>served</h1>\n');
    await writeFile(join(dir, 'not-copied.txt'), 'stays home\n');
    // New content every run, so the server's upload store and layer cache start cold for this template.
    await writeFile(join(dir, 'app', 'nonce.txt'), `${randomBytes(8).toString('hex')}\n`);
    await writeFile(
      join(dir, 'warren.template.json'),
      JSON.stringify(
        {
          name: NAME,
          from: 'base',
          steps: [
            { copy: 'app/', to: '/app/', mode: '0755' },
            { run: 'echo build-marker-$((40+2)); cp /app/hello.txt /app/copied.txt' },
            { env: { GREETING: 'hi-from-template' } },
            { workdir: '/app' },
          ],
          start: 'python3 -m http.server 8000 --directory /app/static',
          ready: { port: 8000, timeout: '60s' },
        },
        null,
        2,
      ),
    );
  });

  afterAll(async () => {
    await Promise.all(sandboxes.map((s) => cp('DELETE', `/v1/sandboxes/${s}`)));
    for (const s of sandboxes) expect(await tracesAfterTeardown(s, ctx)).toEqual([]);
    for (const name of [NAME, FAILING]) {
      const t = await cp<{ id: string }>('GET', `/v1/templates/${name}`);
      if (t.status === 200) await cp('DELETE', `/v1/templates/${t.body.id}`);
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('build uploads the directory, shows steps and log, and prints the template id', async () => {
    const r = await warren(['template', 'build', dir], { timeoutMs: 600_000 });
    expect(r.stderr).toMatch(/uploaded app \(3 files, /);
    expect(r.stderr).toMatch(/==> building cli-e2e-/);
    expect(r.stderr).toContain('build-marker-42');
    expect(r.stderr).toMatch(new RegExp(`built ${NAME} \\(template \\d+\\)`));
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^\d+$/);
    expect((await templates()).find((t) => t.name === NAME)).toMatchObject({ id, status: 'active' });
  });

  it('a sandbox of the built template has the files, env, workdir and running start command', async () => {
    const created = await warren(['sandbox', 'create', '-t', NAME]);
    expect(created.code).toBe(0);
    const sb = created.stdout.trim();
    sandboxes.push(sb);
    const r = await warren(['sandbox', 'exec', sb, '--', 'cat copied.txt; echo "$GREETING $(pwd)"; ls /app']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'hello from the build directory\nhi-from-template /app\ncopied.txt\nhello.txt\nnonce.txt\nstatic\n',
    );
    const ports = JSON.parse((await warren(['sandbox', 'ports', sb, '--json'])).stdout) as Array<{ port: number }>;
    expect(ports.map((p) => p.port)).toContain(8000);
    const page = await fetch(`${ctx.baseURL}/sandboxes/${sb}/ports/8000/index.html`, {
      headers: { 'x-api-key': ctx.apiKey },
    });
    // Previews need a sandbox or preview token, not an API key.
    expect(page.status).toBe(401);
    const url = JSON.parse((await warren(['sandbox', 'ports', sb, '--token', '--json'])).stdout)[0]
      .browser_url as string;
    const served = await fetch(url.replace(/\/\?/, '/index.html?'));
    expect(served.status).toBe(200);
    expect(await served.text()).toBe('<h1>served</h1>\n');
    expect((await warren(['sandbox', 'rm', sb])).code).toBe(0);
  });

  it('logs prints the build log; rebuilding needs --update and reuses the cached layers', async () => {
    const logs = await warren(['template', 'logs', NAME]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('build-marker-42');
    expect(logs.stdout).toContain(`building template ${NAME}`);

    const exists = await warren(['template', 'build', dir]);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toMatch(/exists; pass --update/);

    const again = await warren(['template', 'build', dir, '--update'], { timeoutMs: 600_000 });
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already on the server/);
    expect(again.stderr).toContain('0 layer(s) built, 2 cached');
  });

  it('a failing step fails the build with its output and exit code 1', async () => {
    const failDir = join(dir, 'failing');
    await mkdir(failDir);
    await writeFile(
      join(failDir, 'warren.template.json'),
      JSON.stringify({ name: FAILING, from: 'base', steps: [{ run: 'echo fail-marker-$((3*3)); exit 9' }] }),
    );
    const r = await warren(['template', 'build', failDir], { timeoutMs: 600_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('fail-marker-9');
    expect(r.stderr).toMatch(new RegExp(`build of ${FAILING} failed`));
    expect(r.stdout).toBe('');
    const logs = await warren(['template', 'logs', FAILING, '--follow']);
    expect(logs.stdout).toContain('fail-marker-9');
    expect(logs.code).toBe(1);
  });

  it('an invalid template file is refused before anything is sent', async () => {
    const badDir = join(dir, 'bad');
    await mkdir(badDir);
    await writeFile(
      join(badDir, 'warren.template.json'),
      JSON.stringify({ name: 'never-built', from: 'base', steps: [{ run: 'true', copy: 'x' }] }),
    );
    const r = await warren(['template', 'build', badDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/steps\[0\]: a step has exactly one of copy, run, env, workdir, user/);
    const outside = join(dir, 'escape');
    await mkdir(outside);
    await writeFile(
      join(outside, 'warren.template.json'),
      JSON.stringify({ name: 'never-built', from: 'base', steps: [{ copy: '../app', to: '/app' }] }),
    );
    const out = await warren(['template', 'build', outside]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/outside the build directory/);
    expect((await templates()).map((t) => t.name)).not.toContain('never-built');
  });

  it('rm deletes built templates; built-in ones cannot be deleted', async () => {
    const r = await warren(['template', 'rm', NAME, FAILING]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`deleted template ${NAME} \\(\\d+\\)`));
    const names = (await templates()).map((t) => t.name);
    expect(names).not.toContain(NAME);
    expect(names).not.toContain(FAILING);
    const again = await warren(['template', 'rm', NAME]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/not found/i);
    const builtin = await warren(['template', 'rm', 'base']);
    expect(builtin.code).toBe(1);
    expect((await templates()).map((t) => t.name)).toContain('base');
  });
});
