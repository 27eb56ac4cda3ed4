import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isAlive } from '../test-helpers.ts';
import { ExecHelper, type HelperChildEvents, type HelperSpawnRequest } from './exec-helper.ts';
import { ProcessManager, type SpawnOptions } from './process-manager.ts';

const EXEC_SOURCE = fileURLToPath(new URL('../../../server/native/warren-exec.c', import.meta.url));
let dir: string;
let binary: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-exec-test-'));
  binary = join(dir, 'warren-exec');
  execFileSync('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', binary, EXEC_SOURCE]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readyHelper(): Promise<ExecHelper> {
  const helper = new ExecHelper({ path: binary });
  helper.start();
  expect(await eventually(() => helper.ready)).toBe(true);
  return helper;
}

/** Every event of one child, as a list, and a promise of the list once it exited and both streams ended. */
function recorder() {
  const log: string[] = [];
  const out: Buffer[] = [];
  let resolve: (log: string[]) => void = () => undefined;
  const done = new Promise<string[]>((r) => {
    resolve = r;
  });
  let ended = 0;
  let exited = false;
  const check = () => {
    if (ended === 2 && exited) resolve(log);
  };
  const events: HelperChildEvents = {
    onData: (stream, chunk) => {
      if (stream === 1) out.push(chunk);
      log.push(`data ${stream} ${chunk.length}`);
    },
    onEnd: (stream) => {
      log.push(`end ${stream}`);
      ended++;
      check();
    },
    onExit: (code, signal) => {
      log.push(`exit ${code} ${signal}`);
      exited = true;
      check();
    },
    onLost: (reason) => {
      log.push(`lost ${reason}`);
      resolve(log);
    },
  };
  return { events, done, stdout: () => Buffer.concat(out).toString() };
}

const request = (script: string, extra: Partial<HelperSpawnRequest> = {}): HelperSpawnRequest => ({
  command: '/bin/sh',
  args: ['-c', script],
  cwd: dir,
  env: { PATH: '/usr/bin:/bin' },
  ...extra,
});

describe('warren-exec protocol', () => {
  let helper: ExecHelper;
  beforeAll(async () => {
    helper = await readyHelper();
  });
  afterAll(() => helper.close());

  it('reports the pid at once, then output per stream, end of file and the exit', async () => {
    const rec = recorder();
    const started = helper.spawn(request('printf abc; printf xy >&2; exit 5'), rec.events);
    expect(started).not.toBeNull();
    expect(started && 'pid' in started && started.pid).toBeGreaterThan(0);
    const log = await rec.done;
    expect(log).toEqual(expect.arrayContaining(['data 1 3', 'data 2 2', 'end 1', 'end 2', 'exit 5 null']));
    expect(log.indexOf('data 1 3')).toBeLessThan(log.indexOf('end 1'));
  });

  it('reports the signal that killed a child', async () => {
    const rec = recorder();
    helper.spawn(request('kill -USR1 $$'), rec.events);
    expect(await rec.done).toContain('exit null SIGUSR1');
  });

  it('answers the errno of a spawn that failed: missing program, missing cwd, not executable', async () => {
    const plain = join(dir, 'plain-file');
    await writeFile(plain, 'echo hi\n', { mode: 0o644 });
    const codes = [
      request('', { command: 'warren-no-such-program', args: [] }),
      request('true', { cwd: join(dir, 'no-such-dir') }),
      request('', { command: plain, args: [] }),
      request('', { command: 'tmp', args: [], env: { PATH: '/' } }), // a directory on PATH
    ].map((req) => {
      const result = helper.spawn(req, recorder().events);
      return result !== null && 'error' in result ? result.error.code : 'started';
    });
    expect(codes).toEqual(['ENOENT', 'ENOENT', 'EACCES', 'EACCES']);
  });

  it('runs an executable file without a #! line through /bin/sh, like execvp', async () => {
    const script = join(dir, 'no-shebang');
    await writeFile(script, 'echo "script $0 $1"\n', { mode: 0o755 });
    const rec = recorder();
    helper.spawn(request('', { command: script, args: ['arg'] }), rec.events);
    await rec.done;
    expect(rec.stdout()).toBe(`script ${script} arg\n`);
  });

  it('takes requests larger than a pipe (a big environment)', async () => {
    // One string may not exceed 128 KiB (MAX_ARG_STRLEN), so three of 100 000 bytes.
    const big = 'x'.repeat(100_000);
    const env = { PATH: '/usr/bin:/bin', BIG1: big, BIG2: big, BIG3: big };
    const rec = recorder();
    expect(helper.spawn(request('printf %s "$BIG1$BIG2$BIG3" | wc -c', { env }), rec.events)).toHaveProperty('pid');
    await rec.done;
    expect(rec.stdout().trim()).toBe('300000');
  });

  it('relays a large output unchanged across frames', async () => {
    const rec = recorder();
    helper.spawn(request('seq 1 200000'), rec.events);
    await rec.done;
    const expected = `${Array.from({ length: 200_000 }, (_, i) => i + 1).join('\n')}\n`;
    expect(rec.stdout()).toBe(expected);
  });

  it('starts each child in its own session, signals at their defaults, stdin from /dev/null, no other fds than node gives', async () => {
    /** Output of a program started directly by the helper (no shell between: its state is the helper's doing). */
    const direct = async (command: string, args: string[]) => {
      const rec = recorder();
      const started = helper.spawn(request('', { command, args }), rec.events);
      await rec.done;
      return { pid: started && 'pid' in started ? started.pid : 0, lines: rec.stdout().trim().split('\n') };
    };
    const sids = await direct('sh', ['-c', 'ps -o sid=,pgid= -p $$']);
    expect(sids.lines[0]?.trim().split(/\s+/).map(Number)).toEqual([sids.pid, sids.pid]);
    expect((await direct('grep', ['-E', '^Sig(Ign|Blk)', '/proc/self/status'])).lines).toEqual([
      'SigBlk:\t0000000000000000',
      'SigIgn:\t0000000000000000',
    ]);
    expect((await direct('readlink', ['/proc/self/fd/0'])).lines).toEqual(['/dev/null']);
    // The same descriptors as a child node forks: 0-2, the directory ls reads, whatever this test inherited.
    const forked = execFileSync('ls', ['/proc/self/fd'], { stdio: ['ignore', 'pipe', 'ignore'] });
    expect((await direct('ls', ['/proc/self/fd'])).lines).toEqual(forked.toString().trim().split('\n'));
  });

  it('holds a paused child and keeps its own memory small while the child floods', async () => {
    let seen = 0;
    let ended = 0;
    const started = helper.spawn(request('head -c 50000000 /dev/zero'), {
      onData: (_stream, chunk) => {
        seen += chunk.length;
      },
      onEnd: () => {
        ended++;
      },
      onExit: () => undefined,
      onLost: () => undefined,
    });
    if (started === null || !('child' in started)) throw new Error('not started');
    started.child.pause();
    await new Promise((r) => setTimeout(r, 300));
    const pausedAt = seen;
    expect(pausedAt).toBeLessThan(1_000_000);
    const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${helper.pid}/status`, 'utf8'))?.[1]);
    expect(rssKiB).toBeLessThan(8 * 1024);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toBe(pausedAt);
    started.child.resume();
    expect(await eventually(() => ended === 2, 20_000)).toBe(true);
    expect(seen).toBe(50_000_000);
  });

  it('exits when its stdin closes, leaving its children running', async () => {
    const proc = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const hello = await new Promise<Buffer>((resolve) => proc.stdout.once('data', resolve));
    expect(hello.subarray(4, 5).toString()).toBe('H');
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    proc.stdin.end();
    expect(await exited).toBe(0);
  });
});

describe('ManagedProcess when the exec helper is missing or dies', () => {
  const shell = (script: string, timeoutMs = 5000): SpawnOptions => ({
    command: 'sh',
    args: ['-c', script],
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    timeoutMs,
    maxOutputBytes: 1024,
  });

  it('spawns directly when the helper binary is missing', async () => {
    const helper = new ExecHelper({ path: join(dir, 'missing') });
    const manager = new ProcessManager({ execHelper: helper });
    expect(await manager.run(shell('echo $PPID'))).toMatchObject({ exitCode: 0, stdout: `${process.pid}\n` });
    await new Promise((r) => setTimeout(r, 50));
    expect(helper.ready).toBe(false);
    expect(await manager.run(shell('echo ok'))).toMatchObject({ exitCode: 0, stdout: 'ok\n' });
  });

  it('ends in-flight processes with an error result and kills their groups; later ones go direct', async () => {
    const helper = await readyHelper();
    const manager = new ProcessManager({ execHelper: helper });
    const pidFile = join(dir, 'lost-grandchild.pid');
    const running = [
      manager.start(shell(`sleep 60 & echo $! > ${pidFile}; echo started; wait`, 0)),
      manager.start({ ...shell('', 0), command: 'sleep', args: ['60'] }),
    ];
    expect(await eventually(() => running[0]?.output().stdout === 'started\n')).toBe(true);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    process.kill(helper.pid ?? 0, 'SIGKILL');
    const results = await Promise.all(running.map((p) => p.wait()));
    for (const r of results) {
      expect(r.exitCode).toBe(127);
      expect(r.spawnError).toMatch(/lost, .*warren-exec/);
    }
    expect(await eventually(() => !isAlive(grandchild) && running.every((p) => !isAlive(p.pid ?? 0)))).toBe(true);
    expect(helper.ready).toBe(false);
    expect(await manager.run(shell('echo $PPID'))).toMatchObject({ exitCode: 0, stdout: `${process.pid}\n` });
  });

  it('gives the helper up when it died before answering: that spawn goes direct or ends with 127', async () => {
    const helper = await readyHelper();
    process.kill(helper.pid ?? 0, 'SIGKILL');
    // Before node noticed the exit: the request cannot be written (EPIPE) or the answer never comes.
    const result = await new ProcessManager({ execHelper: helper }).run(shell('echo $PPID'));
    expect(helper.ready).toBe(false);
    if (result.spawnError === undefined) expect(result.stdout).toBe(`${process.pid}\n`);
    else expect(result.exitCode).toBe(127);
  });
});
