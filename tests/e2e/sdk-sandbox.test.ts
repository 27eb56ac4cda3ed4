import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  APIUserAbortError,
  CommandExitError,
  FileNotFoundError,
  type OutputEvent,
  PermissionDeniedError,
  Sandbox,
  SandboxNotFoundError,
  SandboxNotRunningError,
  TemplateNotFoundError,
  UnsupportedError,
} from '@warren/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const ctx = inject('warren');
const conn = { baseURL: ctx.baseURL, apiKey: ctx.apiKey };

/** Polls `check` every 100 ms, at most `tries` times; returns its last value. */
async function eventually<T>(check: () => Promise<T>, ok: (v: T) => boolean, tries = 100): Promise<T> {
  let v = await check();
  for (let i = 1; i < tries && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 100));
    v = await check();
  }
  return v;
}

describe('@warren/sdk against a real server', () => {
  let sb: Sandbox;
  let local: string;

  beforeAll(async () => {
    local = await mkdtemp(join(tmpdir(), 'warren-sdk-e2e-'));
    sb = await Sandbox.create({ ...conn, template: 'code-interpreter', envs: { GREETING: 'hello' } });
  });

  afterAll(async () => {
    await sb?.kill();
    await rm(local, { recursive: true, force: true });
  });

  it('create, getInfo, isRunning, connect and list', async () => {
    expect(sb.sandboxId).toMatch(/^sb/);
    const info = await sb.getInfo();
    expect(info).toMatchObject({ sandboxId: sb.sandboxId, status: 'running', templateName: 'code-interpreter' });
    expect(info.publicHost).toBe(ctx.baseURL);
    expect(info.resources?.memoryMiB).toBeGreaterThan(0);
    expect(info.createdAt).toBeInstanceOf(Date);
    expect(await sb.isRunning()).toBe(true);

    const again = await Sandbox.connect(sb.sandboxId, conn);
    expect((await again.runCode('print(40 + 2)')).stdout).toBe('42\n');

    // The suite server pages by 5: create enough sandboxes that the iterator crosses pages.
    const extra = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => Sandbox.create({ ...conn, template: 'base', metadata: { n: String(n) } })),
    );
    // Metadata given at create comes back on the object, from getInfo and from a fresh connect.
    expect(extra.map((s) => s.info.metadata.n)).toEqual(['1', '2', '3', '4', '5']);
    expect((await Sandbox.connect(extra[2]!.sandboxId, conn)).info.metadata).toEqual({ n: '3' });
    try {
      const seen: string[] = [];
      for await (const s of Sandbox.list({ ...conn, pageSize: 5 })) seen.push(s.sandboxId);
      expect(seen.length).toBeGreaterThanOrEqual(6);
      expect(new Set(seen).size).toBe(seen.length);
      for (const s of [sb, ...extra]) expect(seen).toContain(s.sandboxId);
      const running: string[] = [];
      for await (const s of Sandbox.list({ ...conn, status: 'running' })) running.push(s.status);
      expect(running.every((s) => s === 'running')).toBe(true);
    } finally {
      await Promise.all(extra.map((s) => s.kill()));
    }
  });

  it('create rejects an unknown template with TemplateNotFoundError', async () => {
    await expect(Sandbox.create({ ...conn, template: 'no-such-template' })).rejects.toBeInstanceOf(
      TemplateNotFoundError,
    );
  });

  it('runCode: kernel state, stdout, the last value, errors, envs and cwd', async () => {
    await sb.runCode('counter = 41');
    const ex = await sb.runCode('counter += 1\nprint("GREETING is", __import__("os").environ["GREETING"])\ncounter');
    expect(ex).toMatchObject({ success: true, exitCode: 0, stdout: 'GREETING is hello\n', text: '42' });
    expect(ex.executionCount).toBeGreaterThan(0);

    const failed = await sb.runCode('raise ValueError("nope")');
    expect(failed.success).toBe(false);
    expect(failed.exitCode).toBe(1);
    expect(failed.error).toBe('ValueError: nope');
    expect(failed.stderr).toContain('ValueError');

    const bash = await sb.runCode('echo "$X in $(pwd)"', { language: 'bash', envs: { X: 'y' }, cwd: '/tmp' });
    expect(bash.stdout).toBe('y in /tmp\n');
    const js = await sb.runCode('console.log([1,2,3].map(x => x * 2).join(","))', { language: 'javascript' });
    expect(js.stdout).toBe('2,4,6\n');

    const seen: string[] = [];
    await sb.runCode('print("cb")', { onStdout: (d) => seen.push(d) });
    expect(seen).toEqual(['cb\n']);
  });

  it('runCode returns typed rich results (png, html) and calls onResult', async () => {
    const results: string[] = [];
    const ex = await sb.runCode(
      [
        'import matplotlib.pyplot as plt',
        'import pandas as pd',
        'plt.plot([1, 2, 3], [1, 4, 9])',
        'plt.show()',
        'pd.DataFrame({"a": [1, 2]})',
      ].join('\n'),
      { onResult: (r) => results.push(r.type) },
    );
    expect(ex.success).toBe(true);
    expect(ex.results.map((r) => r.type)).toEqual(['image/png', 'text/html']);
    const png = ex.results.find((r) => r.png !== undefined);
    expect(png?.type).toBe('image/png');
    expect(
      Buffer.from(png?.png ?? '', 'base64')
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
    const table = ex.results.find((r) => r.isMainResult);
    expect(table?.html).toContain('<table');
    expect(table?.text).toContain('a');
    expect(results).toEqual(ex.results.map((r) => r.type));
  });

  it('runCode with a timeout reports timedOut; a signal cancels a long run', async () => {
    const timed = await sb.runCode('import time; time.sleep(30)', { timeoutMs: 1000 });
    expect(timed).toMatchObject({ success: false, timedOut: true, exitCode: 124 });

    const marker = `/tmp/late-${Date.now()}`;
    const controller = new AbortController();
    const long = sb.runCode(`import time; time.sleep(3); open("${marker}", "w").write("ran to the end")`, {
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 500);
    const err = await long.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIUserAbortError);
    // The agent interrupted the run when the request went away: the kernel is free, and the code never got to
    // its last line, even well after it would have.
    const after = await sb.runCode('print("after")');
    expect(after.stdout).toBe('after\n');
    await new Promise((r) => setTimeout(r, 4000));
    expect(await sb.files.exists(marker)).toBe(false);

    // The same for a plain process (javascript).
    const js = new AbortController();
    const jsRun = sb.runCode(`setTimeout(() => require("fs").writeFileSync("${marker}-js", "x"), 3000)`, {
      language: 'javascript',
      signal: js.signal,
    });
    setTimeout(() => js.abort(), 500);
    expect(await jsRun.catch((e: unknown) => e)).toBeInstanceOf(APIUserAbortError);
    await new Promise((r) => setTimeout(r, 4000));
    expect(await sb.files.exists(`${marker}-js`)).toBe(false);
  });

  it('runCodeStream delivers output while the code is still running', async () => {
    const flag = `/tmp/go-${Date.now()}`;
    const run = sb.runCodeStream(
      `import os, time\nprint("waiting", flush=True)\nwhile not os.path.exists("${flag}"): time.sleep(0.05)\nprint("done")`,
    );
    const events: Array<OutputEvent & { receivedAt: number }> = [];
    for await (const ev of run) {
      events.push({ ...ev, receivedAt: Date.now() });
      // The code cannot finish until we react to its first line: output arrived before the end.
      if (ev.data.includes('waiting')) await sb.files.write(flag, 'go');
    }
    const ex = await run.wait();
    expect(ex).toMatchObject({ success: true, exitCode: 0, stdout: 'waiting\ndone\n' });
    expect(events.map((e) => e.data).join('')).toBe('waiting\ndone\n');
    const first = events.find((e) => e.data.includes('waiting'));
    const last = events.find((e) => e.data.includes('done'));
    expect(first && last && first.receivedAt <= last.receivedAt).toBe(true);
  });

  it('runCodeStream: break and kill() end the process', async () => {
    const run = sb.runCodeStream('import time\nprint("tick", flush=True)\ntime.sleep(3021)');
    for await (const ev of run) {
      expect(ev.type).toBe('stdout');
      expect(ev.data).toMatch(/^tick/);
      expect(ev.timestamp).toBeInstanceOf(Date);
      break;
    }
    const killed = await eventually(
      () => sb.commands.run('pgrep -f "time.slee[p](3021)" || true').then((r) => r.stdout.trim()),
      (v) => v === '',
    );
    expect(killed).toBe('');

    const second = sb.runCodeStream('import time\ntime.sleep(3022)', { language: 'python' });
    await eventually(
      () => sb.commands.run('pgrep -f "time.slee[p](3022)" || true').then((r) => r.stdout.trim()),
      (v) => v !== '',
    );
    await second.kill();
    const ex = await second.wait();
    expect(ex.success).toBe(false);
    expect(ex.exitCode).toBe(137);
    const gone = await eventually(
      () => sb.commands.run('pgrep -f "time.slee[p](3022)" || true').then((r) => r.stdout.trim()),
      (v) => v === '',
    );
    expect(gone).toBe('');
  });

  it('commands.run: result, CommandExitError, reject: false, callbacks, cwd and envs', async () => {
    const ok = await sb.commands.run('echo "$GREETING $WHO from $(pwd)"; echo err >&2', {
      envs: { WHO: 'sdk' },
      cwd: '/tmp',
    });
    expect(ok).toMatchObject({ exitCode: 0, stdout: 'hello sdk from /tmp\n', stderr: 'err\n', killed: false });

    const err = await sb.commands.run('echo partial; exit 3').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandExitError);
    expect((err as CommandExitError).exitCode).toBe(3);
    expect((err as CommandExitError).stdout).toBe('partial\n');
    expect((err as CommandExitError).result.exitCode).toBe(3);

    const soft = await sb.commands.run('exit 4', { reject: false });
    expect(soft.exitCode).toBe(4);
    let settled = false;
    await sb.commands.run('true').finally(() => {
      settled = true;
    });
    expect(settled).toBe(true);

    const out: string[] = [];
    const timed = await sb.commands.run('echo a; sleep 30', {
      commandTimeoutMs: 1000,
      reject: false,
      onStdout: (d) => out.push(d),
    });
    expect(timed.timedOut).toBe(true);
    expect(out.join('')).toBe('a\n');
  });

  it('commands.run streams output before the command ends (timestamps and a causal handshake)', async () => {
    const flag = `/tmp/cmd-go-${Date.now()}`;
    const handle = sb.commands.run(`echo ready; while [ ! -e ${flag} ]; do sleep 0.05; done; echo finished`);
    const seen: Array<{ data: string; at: number }> = [];
    for await (const ev of handle) {
      seen.push({ data: ev.data, at: Date.now() });
      if (ev.data.includes('ready')) await sb.files.write(flag, '1');
    }
    const result = await handle;
    const endedAt = Date.now();
    expect(result.stdout).toBe('ready\nfinished\n');
    const ready = seen.find((s) => s.data.includes('ready'));
    const finished = seen.find((s) => s.data.includes('finished'));
    expect(ready).toBeDefined();
    expect(finished).toBeDefined();
    expect((ready?.at ?? Infinity) <= (finished?.at ?? -Infinity)).toBe(true);
    expect((finished?.at ?? Infinity) <= endedAt).toBe(true);
  });

  it('break out of a command stream closes it and kills the command', async () => {
    const handle = sb.commands.run('echo started; exec sleep 3017');
    for await (const ev of handle) {
      expect(ev.data).toBe('started\n');
      break;
    }
    const result = await handle.wait().catch((e: unknown) => e);
    expect((result as CommandExitError).killed).toBe(true);
    // The agent kills the process group when the socket closes.
    const left = await eventually(
      () => sb.commands.run('pgrep -f "slee[p] 3017" || true').then((r) => r.stdout.trim()),
      (v) => v === '',
    );
    expect(left).toBe('');
  });

  it('kill() and signal end a running command', async () => {
    const handle = sb.commands.run('exec sleep 3018', { reject: false });
    await eventually(
      () => sb.commands.run('pgrep -f "slee[p] 3018" || true').then((r) => r.stdout.trim()),
      (v) => v !== '',
    );
    await handle.kill();
    expect(await handle).toMatchObject({ killed: true, exitCode: 137 });

    const controller = new AbortController();
    const aborted = sb.commands.run('exec sleep 3019', { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(aborted.wait()).rejects.toBeInstanceOf(APIUserAbortError);
    // Aborted before the socket opened: the same error, nothing runs.
    await expect(sb.commands.run('exec sleep 3019', { signal: AbortSignal.abort() }).wait()).rejects.toBeInstanceOf(
      APIUserAbortError,
    );
    const left = await eventually(
      () => sb.commands.run('pgrep -f "slee[p] 301[89]" || true').then((r) => r.stdout.trim()),
      (v) => v === '',
    );
    expect(left).toBe('');
  });

  it('sendStdin writes to a command started with stdin: true; closeStdin ends its input', async () => {
    const sort = sb.commands.run('sort', { stdin: true });
    await sort.sendStdin('pear\napple\n');
    await sort.sendStdin('fig\n');
    await sort.closeStdin();
    expect((await sort).stdout).toBe('apple\nfig\npear\n');

    // Interleaved: each line is answered before the next is sent.
    const echo = sb.commands.run('while read -r line; do echo "got $line"; done', { stdin: true });
    const seen: string[] = [];
    const reader = (async () => {
      for await (const ev of echo) {
        seen.push(ev.data);
        if (seen.join('').includes('got two')) break;
      }
    })();
    await echo.sendStdin('one\n');
    for (let i = 0; i < 100 && !seen.join('').includes('got one'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(seen.join('')).toBe('got one\n');
    await echo.sendStdin('two\n');
    await reader;
    expect(seen.join('')).toBe('got one\ngot two\n');

    // Without stdin: true the command reads an empty stdin, and sendStdin says how to enable it.
    const plain = sb.commands.run('cat; echo end');
    await expect(plain.sendStdin('x')).rejects.toBeInstanceOf(UnsupportedError);
    expect((await plain).stdout).toBe('end\n');
  });

  it('files: write and read text, bytes and streams; list, exists, makeDir, remove', async () => {
    await sb.files.makeDir('/workspace/sdk/nested');
    await sb.files.write('/workspace/sdk/a.txt', 'héllo\n');
    expect(await sb.files.read('/workspace/sdk/a.txt')).toBe('héllo\n');

    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await sb.files.write('/workspace/sdk/b.bin', bytes);
    expect(await sb.files.read('/workspace/sdk/b.bin', { format: 'bytes' })).toEqual(bytes);

    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('one,'));
        c.enqueue(new TextEncoder().encode('two'));
        c.close();
      },
    });
    const written = await sb.files.write('/workspace/sdk/c.txt', stream);
    expect(written).toEqual({ path: '/workspace/sdk/c.txt', size: 7 });
    const readBack = await sb.files.read('/workspace/sdk/c.txt', { format: 'stream' });
    expect(await new Response(readBack).text()).toBe('one,two');

    const list = await sb.files.list('/workspace/sdk');
    expect(list.map((f) => f.name).sort()).toEqual(['a.txt', 'b.bin', 'c.txt', 'nested']);
    const dir = list.find((f) => f.name === 'nested');
    expect(dir?.isDir).toBe(true);
    expect(list.find((f) => f.name === 'b.bin')).toMatchObject({ size: 5, isDir: false, path: '/workspace/sdk/b.bin' });

    expect(await sb.files.exists('/workspace/sdk/a.txt')).toBe(true);
    await sb.files.remove('/workspace/sdk/a.txt');
    expect(await sb.files.exists('/workspace/sdk/a.txt')).toBe(false);
    await expect(sb.files.read('/workspace/sdk/a.txt')).rejects.toBeInstanceOf(FileNotFoundError);
    await expect(sb.files.remove('/workspace/sdk/a.txt')).rejects.toBeInstanceOf(FileNotFoundError);
    await expect(sb.files.read('/etc/passwd')).rejects.toBeInstanceOf(PermissionDeniedError);

    // Byte arrays over 4 MiB are uploaded instead of sent as base64 JSON.
    const big = new Uint8Array(6 * 1024 * 1024).map((_, i) => (i * 7) % 251);
    expect(await sb.files.write('/workspace/sdk/big.bin', big)).toEqual({
      path: '/workspace/sdk/big.bin',
      size: big.length,
    });
    const bigBack = await sb.files.read('/workspace/sdk/big.bin', { format: 'bytes' });
    expect(Buffer.compare(Buffer.from(bigBack), Buffer.from(big))).toBe(0);

    await writeFile(join(local, 'up.txt'), 'from disk');
    await sb.files.upload(join(local, 'up.txt'), '/workspace/sdk/up.txt');
    expect(await sb.files.read('/workspace/sdk/up.txt')).toBe('from disk');
    expect(await sb.files.download('/workspace/sdk/c.txt', join(local, 'down.txt'))).toBe(7);
    expect(await readFile(join(local, 'down.txt'), 'utf8')).toBe('one,two');
  });

  it('files.watch reports changes; leaving the loop closes the watch', async () => {
    await sb.files.makeDir('/workspace/watched');
    const watch = sb.files.watch('/workspace/watched');
    await watch.ready();
    let n = 0;
    // The agent starts watching after the socket opens and sends no acknowledgement: write until a change shows.
    const writer = setInterval(() => {
      void sb.files.write(`/workspace/watched/f${n++}.txt`, 'x').catch(() => undefined);
    }, 200);
    try {
      for await (const change of watch) {
        expect(change.path).toMatch(/^\/workspace\/watched\/f\d+\.txt$/);
        expect(['created', 'modified']).toContain(change.event);
        expect(change.timestamp).toBeInstanceOf(Date);
        break;
      }
    } finally {
      clearInterval(writer);
    }
    // close() ends an iteration that is waiting for the next change.
    const idle = sb.files.watch('/workspace/watched');
    const ended = (async () => {
      const seen: string[] = [];
      for await (const change of idle) seen.push(change.path);
      return seen;
    })();
    idle.close();
    expect(Array.isArray(await ended)).toBe(true);
  });

  it('pty: output, input, resize and the exit code', async () => {
    const pty = await sb.pty.create({ cols: 80, rows: 24 });
    let out = '';
    const reading = (async () => {
      for await (const data of pty) out += data;
    })();
    await pty.resize({ cols: 123, rows: 45 });
    await pty.sendInput('stty size; echo "pty-$((6*7))"\n');
    await eventually(
      async () => out,
      (o) => o.includes('pty-42') && o.includes('45 123'),
    );
    expect(out).toContain('pty-42');
    expect(out).toContain('45 123');
    await pty.sendInput('exit 7\n');
    expect(await pty.wait()).toBe(7);
    await reading;
    expect(pty.exitCode).toBe(7);

    const chunks: string[] = [];
    const second = await sb.pty.create({ onData: (d) => chunks.push(d) });
    await second.sendInput('exit 0\n');
    expect(await second.wait()).toBe(0);

    // kill() hangs the terminal up: the shell and what it runs end.
    const third = await sb.pty.create();
    await third.sendInput('exec sleep 3023\n');
    await eventually(
      () => sb.commands.run('pgrep -f "slee[p] 3023" || true').then((r) => r.stdout.trim()),
      (v) => v !== '',
    );
    third.kill();
    expect(await third.wait()).toBeUndefined();
    const hungUp = await eventually(
      () => sb.commands.run('pgrep -f "slee[p] 3023" || true').then((r) => r.stdout.trim()),
      (v) => v === '',
    );
    expect(hungUp).toBe('');
  });

  it('env: set, get, update, delete, setAll, clear, and commands see them', async () => {
    await sb.env.set('SDK_A', '1');
    expect(await sb.env.get('SDK_A')).toBe('1');
    expect(await sb.env.update({ SDK_B: '2' })).toMatchObject({ SDK_A: '1', SDK_B: '2' });
    expect((await sb.commands.run('echo $SDK_A$SDK_B')).stdout).toBe('12\n');
    await sb.env.delete('SDK_A');
    expect(await sb.env.get('SDK_A')).toBeUndefined();
    expect(await sb.env.setAll({ ONLY: 'x' })).toEqual({ ONLY: 'x' });
    await sb.env.clear();
    expect(await sb.env.getAll()).toEqual({});
  });

  it('getHost and createPreviewURL reach a server in the sandbox', async () => {
    await sb.files.write('/workspace/site/index.html', '<h1>from the sandbox</h1>');
    const server = sb.commands.run('cd /workspace/site && exec python3 -m http.server 8123', { reject: false });
    try {
      const url = sb.getHost(8123);
      expect(url).toBe(`${ctx.baseURL}/sandboxes/${sb.sandboxId}/ports/8123/`);
      const page = await eventually(
        () =>
          fetch(url, { headers: { authorization: `Bearer ${sb.accessToken}` } })
            .then(async (r) => (r.ok ? r.text() : ''))
            .catch(() => ''),
        (t) => t !== '',
      );
      expect(page).toContain('from the sandbox');
      const signed = await sb.createPreviewURL(8123, { ttlMs: 120_000 });
      const viaSigned = await fetch(signed);
      expect(viaSigned.status).toBe(200);
      expect(await viaSigned.text()).toContain('from the sandbox');
    } finally {
      await server.kill();
    }
  });

  it('pause, resume, setTimeout, refreshToken and kill', async () => {
    const s = await Sandbox.create({ ...conn, template: 'base' });
    try {
      const before = s.accessToken;
      await new Promise((r) => setTimeout(r, 1100)); // tokens carry whole-second issue times
      await s.refreshToken();
      expect(s.accessToken).not.toBe(before);
      expect(await s.files.exists('/workspace')).toBe(true);

      await s.files.write('/workspace/keep.txt', 'kept');
      await s.pause();
      expect(s.info.status).toBe('paused');
      await expect(s.files.read('/workspace/keep.txt')).rejects.toBeInstanceOf(SandboxNotRunningError);
      // WebSocket streams refused at the upgrade map to the same error.
      await expect(s.commands.run('true').wait()).rejects.toBeInstanceOf(SandboxNotRunningError);
      await s.resume();
      expect(s.info.status).toBe('running');
      expect(await s.files.read('/workspace/keep.txt')).toBe('kept');

      await s.setTimeout(600_000);
      expect(s.info.timeoutMs).toBe(600_000);
      const info = await s.getInfo();
      expect(info.expiresAt?.getTime()).toBeGreaterThan(Date.now());

      const paused = await Sandbox.create({ ...conn, template: 'base' });
      await paused.pause();
      const reconnected = await Sandbox.connect(paused.sandboxId, conn);
      expect(reconnected.info.status).toBe('running');
      expect(await reconnected.kill()).toBe(true);
    } finally {
      expect(await s.kill()).toBe(true);
    }
    expect(await s.kill()).toBe(false);
    expect(await s.isRunning()).toBe(false);
    await expect(s.getInfo()).rejects.toBeInstanceOf(SandboxNotFoundError);
    await expect(Sandbox.connect(s.sandboxId, conn)).rejects.toBeInstanceOf(SandboxNotFoundError);
  });

  it('await using kills the sandbox at the end of the scope', async () => {
    let id = '';
    {
      await using scoped = await Sandbox.create({ ...conn, template: 'base' });
      id = scoped.sandboxId;
      expect((await scoped.commands.run('echo scoped')).stdout).toBe('scoped\n');
    }
    await expect(Sandbox.connect(id, conn)).rejects.toBeInstanceOf(SandboxNotFoundError);
  });
});
