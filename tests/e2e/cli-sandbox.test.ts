import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { warren } from './cli.ts';
import { cp } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('warren sandbox (real binary, real server)', () => {
  const created: string[] = [];
  let dir: string;
  let id: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-cli-e2e-'));
  });
  afterAll(async () => {
    await Promise.all(created.map((s) => cp('DELETE', `/v1/sandboxes/${s}`)));
    for (const s of created) expect(await tracesAfterTeardown(s, ctx)).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });

  it('create prints the new id on stdout and a message on stderr', async () => {
    const r = await warren(['sandbox', 'create', '--template', 'base', '--timeout', '10m', '-e', 'GREETING=hello']);
    expect(r.stderr).toMatch(/created sb/);
    expect(r.code).toBe(0);
    id = r.stdout.trim();
    expect(id).toMatch(/^[a-z0-9]+$/);
    created.push(id);
    const got = await cp<{ status: string; timeout_seconds: number }>('GET', `/v1/sandboxes/${id}`);
    expect(got.status).toBe(200);
    expect(got.body.status).toBe('running');
    expect(got.body.timeout_seconds).toBe(600);
  });

  it('ls --json lists it (crossing pages) and the table shows it', async () => {
    const json = await warren(['sandbox', 'ls', '--json']);
    expect(json.code).toBe(0);
    const list = JSON.parse(json.stdout) as Array<{ id: string; status: string }>;
    expect(list.find((s) => s.id === id)?.status).toBe('running');
    // Every sandbox the API lists, across all pages (the suite server's page size is 5).
    const ids = new Set<string>();
    let cursor: string | null = null;
    do {
      const page: { body: { data: Array<{ id: string }>; next_cursor: string | null } } = await cp(
        'GET',
        `/v1/sandboxes?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
      );
      for (const s of page.body.data) ids.add(s.id);
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(new Set(list.map((s) => s.id))).toEqual(ids);

    const table = await warren(['sandbox', 'ls']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+STATUS\s+TEMPLATE/);
    expect(table.stdout).toMatch(new RegExp(`^${id}\\s+running\\s+base`, 'm'));
  });

  it('info --json shows the sandbox', async () => {
    const r = await warren(['sandbox', 'info', id, '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ id, status: 'running', template_name: 'base' });
    expect(info).not.toHaveProperty('auth_token');
  });

  it('exec streams stdout and stderr apart and exits with the command exit code', async () => {
    const r = await warren(['sandbox', 'exec', id, '--', 'echo "$GREETING-out"; echo to-err >&2; exit 7']);
    expect(r.stdout).toBe('hello-out\n');
    expect(r.stderr).toContain('to-err\n');
    expect(r.code).toBe(7);
    const ok = await warren(['sandbox', 'exec', '-e', 'X=42', '-w', '/tmp', id, 'echo', '$X', '$(pwd)']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe('42 /tmp\n');
    // Everything after the id belongs to the command, options included; `--` is optional.
    const dashes = await warren(['sandbox', 'exec', id, 'ls', '-ld', '/tmp']);
    expect(dashes.code).toBe(0);
    expect(dashes.stdout).toMatch(/^drwxrwxrwt .* \/tmp\n$/);
    const none = await warren(['sandbox', 'exec', id, '--']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no command given/);
    const killed = await warren(['sandbox', 'exec', id, '--', 'kill -9 $$']);
    expect(killed.code).toBe(137);
  });

  it('cp copies a file in and back out unchanged, streamed', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const local = join(dir, 'in.bin');
    await writeFile(local, data);
    const up = await warren(['sandbox', 'cp', local, `${id}:/workspace/sub/copied.bin`]);
    expect(up.stderr).toMatch(/copied 3\.0 MiB/);
    expect(up.code).toBe(0);
    const inside = await warren(['sandbox', 'exec', id, '--', 'sha256sum /workspace/sub/copied.bin']);
    expect(inside.stdout.split(' ')[0]).toBe(sha256(data));

    const back = join(dir, 'out.bin');
    const down = await warren(['sandbox', 'cp', `${id}:/workspace/sub/copied.bin`, back]);
    expect(down.code).toBe(0);
    expect(sha256(await readFile(back))).toBe(sha256(data));

    // Into a directory keeps the name; stdin and stdout work as "-".
    const intoDir = await warren(['sandbox', 'cp', `${id}:/workspace/sub/copied.bin`, `${dir}/`]);
    expect(intoDir.code).toBe(0);
    expect(sha256(await readFile(join(dir, 'copied.bin')))).toBe(sha256(data));
    const fromStdin = await warren(['sandbox', 'cp', '-', `${id}:/tmp/note.txt`], { input: 'from stdin\n' });
    expect(fromStdin.code).toBe(0);
    const toStdout = await warren(['sandbox', 'cp', `${id}:/tmp/note.txt`, '-']);
    expect(toStdout.stdout).toBe('from stdin\n');
  });

  it('cp streams a large file both ways with the CLI memory far below its size', async () => {
    const size = 160 * 1024 * 1024;
    const big = join(dir, 'big.bin');
    const hash = createHash('sha256');
    const out = await open(big, 'w');
    for (let written = 0; written < size; written += 4 * 1024 * 1024) {
      const chunk = randomBytes(4 * 1024 * 1024);
      hash.update(chunk);
      await out.write(chunk);
    }
    await out.close();
    const digest = hash.digest('hex');
    // The same CLI doing a small request, measured in this run, is the baseline.
    const baseline = await warren(['sandbox', 'ls', '--json'], { measureRss: true });
    const up = await warren(['sandbox', 'cp', big, `${id}:/workspace/big.bin`], {
      measureRss: true,
      timeoutMs: 600_000,
    });
    expect(up.code).toBe(0);
    const inside = await warren(['sandbox', 'exec', id, '--', 'sha256sum /workspace/big.bin']);
    expect(inside.stdout.split(' ')[0]).toBe(digest);
    await rm(big);
    const down = await warren(['sandbox', 'cp', `${id}:/workspace/big.bin`, big], {
      measureRss: true,
      timeoutMs: 600_000,
    });
    expect(down.code).toBe(0);
    const back = createHash('sha256');
    for await (const chunk of createReadStream(big)) back.update(chunk as Buffer);
    expect(back.digest('hex')).toBe(digest);
    await rm(big);
    await warren(['sandbox', 'exec', id, '--', 'rm /workspace/big.bin']);
    const MiB = 1024;
    console.log(
      `[cli cp] peak RSS: baseline ${(baseline.maxRssKiB! / MiB).toFixed(0)} MiB, upload ${(up.maxRssKiB! / MiB).toFixed(0)} MiB, download ${(down.maxRssKiB! / MiB).toFixed(0)} MiB; file ${size / 1024 / 1024} MiB`,
    );
    // Growth over the baseline stays well under half the file.
    expect(up.maxRssKiB! - baseline.maxRssKiB!).toBeLessThan(size / 1024 / 2);
    expect(down.maxRssKiB! - baseline.maxRssKiB!).toBeLessThan(size / 1024 / 2);
  });

  it('cp reports errors with the code and leaves no partial file', async () => {
    const missing = await warren(['sandbox', 'cp', `${id}:/workspace/nope.txt`, join(dir, 'nope.txt')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/FILE_NOT_FOUND/);
    await expect(readFile(join(dir, 'nope.txt'))).rejects.toThrow(/ENOENT/);
    const outside = await warren(['sandbox', 'cp', join(dir, 'in.bin'), `${id}:/etc/evil`]);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toMatch(/PATH_NOT_ALLOWED/);
    const bad = await warren(['sandbox', 'cp', join(dir, 'in.bin'), join(dir, 'x')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/exactly one of source and destination/);
  });

  it('exec --background and logs: list, then follow to the exit code', async () => {
    const started = await warren([
      'sandbox',
      'exec',
      '--background',
      id,
      '--',
      'for i in 1 2 3; do echo line-$i; sleep 0.2; done; echo done-err >&2; exit 4',
    ]);
    expect(started.code).toBe(0);
    const proc = started.stdout.trim();
    expect(proc).toMatch(/^proc_/);
    const list = await warren(['sandbox', 'logs', id, '--json']);
    expect((JSON.parse(list.stdout) as Array<{ process_id: string }>).map((p) => p.process_id)).toContain(proc);
    const followed = await warren(['sandbox', 'logs', id, proc, '--follow']);
    expect(followed.stdout).toBe('line-1\nline-2\nline-3\n');
    expect(followed.stderr).toContain('done-err');
    expect(followed.code).toBe(4);
  });

  it('ports lists a port a process listens on, with its preview URL', async () => {
    await warren(['sandbox', 'exec', id, '--', 'nohup python3 -m http.server 8765 >/dev/null 2>&1 & sleep 0.1']);
    let ports: Array<{ port: number; url: string }> = [];
    for (let i = 0; i < 100 && !ports.some((p) => p.port === 8765); i++) {
      const r = await warren(['sandbox', 'ports', id, '--json']);
      expect(r.code).toBe(0);
      ports = JSON.parse(r.stdout);
    }
    const port = ports.find((p) => p.port === 8765);
    expect(port?.url).toBe(`${ctx.baseURL}/sandboxes/${id}/ports/8765/`);
  });

  it('pause makes agent verbs fail with SANDBOX_PAUSED; resume brings them back', async () => {
    const paused = await warren(['sandbox', 'pause', id]);
    expect(paused.code).toBe(0);
    expect(paused.stderr).toContain(`${id} paused`);
    const info = JSON.parse((await warren(['sandbox', 'info', id, '--json'])).stdout) as { status: string };
    expect(info.status).toBe('paused');
    const refused = await warren(['sandbox', 'exec', id, '--', 'true']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/SANDBOX_PAUSED/);
    const resumed = await warren(['sandbox', 'resume', id]);
    expect(resumed.code).toBe(0);
    const after = await warren(['sandbox', 'exec', id, '--', 'cat /workspace/sub/copied.bin | wc -c']);
    expect(after.code).toBe(0);
    expect(after.stdout.trim()).toBe(String(3 * 1024 * 1024 + 17));
  });

  it('rm deletes it: gone from ls --json, and further verbs fail', async () => {
    const r = await warren(['sandbox', 'rm', id]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`deleted ${id}`);
    const list = JSON.parse((await warren(['sandbox', 'ls', '--json'])).stdout) as Array<{ id: string }>;
    expect(list.map((s) => s.id)).not.toContain(id);
    const gone = await warren(['sandbox', 'exec', id, '--', 'true']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/not found/i);
    const again = await warren(['sandbox', 'rm', id, 'sbdoesnotexist00']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/sbdoesnotexist00: .*not found/i);
  });

  it('reports configuration and connection problems without a stack', async () => {
    const noKey = await warren(['sandbox', 'ls'], {
      env: { PATH: process.env.PATH ?? '', WARREN_URL: ctx.baseURL, XDG_CONFIG_HOME: dir },
    });
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/no API key/);
    const wrongKey = await warren(['--api-key', 'wrn_wrong_key_value', 'sandbox', 'ls']);
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/Invalid API key \(INVALID_TOKEN, req_[0-9a-f]+\)/);
    expect(wrongKey.stderr).not.toMatch(/\n\s+at /);
    // A config file is read when nothing else says where the server is.
    const cfg = join(dir, 'warren', 'config.json');
    await mkdir(join(dir, 'warren'), { recursive: true });
    await writeFile(cfg, JSON.stringify({ url: ctx.baseURL, apiKey: ctx.apiKey }), { mode: 0o600 });
    const fromFile = await warren(['sandbox', 'ls', '--json'], {
      env: { PATH: process.env.PATH ?? '', XDG_CONFIG_HOME: dir },
    });
    expect(fromFile.code).toBe(0);
    expect(Array.isArray(JSON.parse(fromFile.stdout))).toBe(true);
    // The flag beats the file: the error names the flag's URL (port 1 is refused before any connection).
    const flagWins = await warren(['--url', 'http://127.0.0.1:1', 'sandbox', 'ls'], {
      env: { PATH: process.env.PATH ?? '', XDG_CONFIG_HOME: dir },
    });
    expect(flagWins.code).toBe(1);
    expect(flagWins.stderr).toMatch(/cannot reach the Warren server at http:\/\/127\.0\.0\.1:1 \(bad port\)/);
  });
});
