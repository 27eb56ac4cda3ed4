import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox, SandboxExpiredError } from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');
const opts = { baseURL: ctx.baseURL, apiKey: ctx.apiKey };

describe('official @hopx-ai/sdk 0.5.1 against a real Warren server', () => {
  let sb: Sandbox;
  let localDir: string;

  beforeAll(async () => {
    localDir = await mkdtemp(join(tmpdir(), 'warren-sdk-'));
    sb = await Sandbox.create({ template: 'code-interpreter', envVars: { FOO: 'bar' }, ...opts });
  });

  afterAll(async () => {
    await rm(localDir, { recursive: true, force: true });
    await sb?.kill().catch(() => undefined);
  });

  it('creates a running sandbox with a public host', async () => {
    expect(sb.sandboxId).toMatch(/^sb[a-z0-9]{14}$/);
    const info = await sb.getInfo();
    expect(info.status).toBe('running');
    expect(info.publicHost).toBe(ctx.baseURL);
    expect(info.templateName).toBe('code-interpreter');
  });

  it('runs python, javascript and bash', async () => {
    const py = await sb.runCode("import os; print('hi', os.environ['FOO'])");
    expect(py.stdout).toBe('hi bar\n');
    expect(py.exit_code).toBe(0);
    expect(py.success).toBe(true);

    const js = await sb.runCode('console.log(1 + 1)', {
      language: 'javascript',
      timeout: 10,
      workingDir: '/tmp',
      env: { A: '1' },
    });
    expect(js.stdout).toBe('2\n');
    expect(js.success).toBe(true);

    const bash = await sb.runCode('echo "$A-$(pwd)"; exit 4', { language: 'bash', env: { A: 'x' } });
    expect(bash.stdout).toBe('x-/workspace\n');
    expect(bash.exit_code).toBe(4);
    expect(bash.success).toBe(false);

    const failing = await sb.runCode('raise SystemExit(3)');
    expect(failing.exit_code).toBe(3);
    expect(failing.success).toBe(false);
  });

  it('runs go', async () => {
    const go = await sb.runCode('package main\nimport "fmt"\nfunc main() { fmt.Println("go", 6*7) }', {
      language: 'go',
      timeout: 120,
    });
    expect(go.stderr).toBe('');
    expect(go.stdout).toBe('go 42\n');
    expect(go.exit_code).toBe(0);
  });

  it('writes, reads, lists, checks, removes and makes directories', async () => {
    await sb.files.write('/workspace/a.txt', 'hello');
    expect(await sb.files.read('/workspace/a.txt')).toBe('hello');
    const entries = await sb.files.list('/workspace');
    const a = entries.find((e) => e.name === 'a.txt');
    expect(a?.is_dir).toBe(false);
    expect(a?.size).toBe(5);
    expect(await sb.files.exists('/workspace/a.txt')).toBe(true);
    expect(await sb.files.exists('/workspace/a b.txt')).toBe(false);
    await sb.files.write('/workspace/a b.txt', 'spaced');
    expect(await sb.files.read('/workspace/a b.txt')).toBe('spaced');

    await sb.files.mkdir('/workspace/d/e');
    expect((await sb.files.list('/workspace/d')).find((e) => e.name === 'e')?.is_dir).toBe(true);
    await sb.files.remove('/workspace/d');
    expect(await sb.files.exists('/workspace/d')).toBe(false);
  });

  it('round-trips a 5 MiB binary file byte for byte (writeBytes/readBytes, upload/download)', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    await sb.files.writeBytes('/workspace/blob.bin', data, { mode: '0600' });
    const back = await sb.files.readBytes('/workspace/blob.bin');
    expect(back.length).toBe(data.length);
    expect(Buffer.compare(back, data)).toBe(0);
    const mode = await sb.commands.run('stat -c %a /workspace/blob.bin');
    expect(mode.stdout.trim()).toBe('600');

    const local = join(localDir, 'up.bin');
    const other = randomBytes(5 * 1024 * 1024);
    await writeFile(local, other);
    await sb.files.upload(local, '/workspace/up/up.bin');
    const downloaded = await sb.files.download('/workspace/up/up.bin');
    expect(Buffer.compare(downloaded, other)).toBe(0);
  });

  it('runs commands with pipes, working dir, env and non-zero exits (no retry)', async () => {
    const piped = await sb.commands.run('echo hi | tr a-z A-Z');
    expect(piped.stdout).toBe('HI\n');
    expect(piped.exit_code).toBe(0);

    const pwd = await sb.commands.run('echo "$(pwd) $Z"', { workingDir: '/tmp', timeout: 5, env: { Z: '9' } });
    expect(pwd.stdout).toBe('/tmp 9\n');

    const failed = await sb.commands.run('echo once >> /tmp/exit3-count; exit 3');
    expect(failed.exit_code).toBe(3);
    expect(failed.success).toBe(false);
    // One HTTP request ran the command once: a 5xx would have made the SDK retry it.
    expect(await sb.files.read('/tmp/exit3-count')).toBe('once\n');
  });

  it('manages environment variables that later executions see', async () => {
    expect(await sb.env.get('FOO')).toBe('bar');
    await sb.env.set('K', 'V');
    const all = await sb.env.update({ A: 'b' });
    expect(all).toMatchObject({ FOO: 'bar', K: 'V', A: 'b' });
    const run = await sb.runCode("import os; print(os.environ['K'], os.environ['A'])");
    expect(run.stdout).toBe('V b\n');
    await sb.env.delete('K');
    const after = await sb.env.getAll();
    expect(after.K).toBeUndefined();
    expect(after.FOO).toBe('bar');
    const cmd = await sb.commands.run('printenv K || echo unset; echo "$A"');
    expect(cmd.stdout).toBe('unset\nb\n');
  });

  it('lists sandboxes and iterates over more than one page', async () => {
    const listed = await Sandbox.list({ ...opts, status: 'running', limit: 5 });
    expect(listed.map((s) => s.sandboxId)).toContain(sb.sandboxId);

    // The test server answers at most 5 per page: 6 more sandboxes force a second page.
    const extra = await Promise.all(Array.from({ length: 6 }, () => Sandbox.create({ template: 'base', ...opts })));
    try {
      const seen: string[] = [];
      for await (const s of Sandbox.iter(opts)) seen.push(s.sandboxId);
      for (const s of [sb, ...extra]) expect(seen).toContain(s.sandboxId);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.length).toBeGreaterThan(5);
    } finally {
      await Promise.all(extra.map((s) => s.kill()));
    }
    for (const s of extra) expect(await tracesAfterTeardown(s.sandboxId, ctx)).toEqual([]);
  });

  it('kill removes the sandbox; getInfo then throws SandboxExpiredError and nothing is left', async () => {
    const id = sb.sandboxId;
    await sb.kill();
    await expect(sb.getInfo()).rejects.toBeInstanceOf(SandboxExpiredError);
    expect(await tracesAfterTeardown(id, ctx)).toEqual([]);
  });
});
