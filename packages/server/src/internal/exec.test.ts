import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError, run, runLogged } from './exec.ts';

// These run real host commands through the spawner process (warren-spawner.py).
describe('run', () => {
  it('returns exit code, stdout and stderr', async () => {
    const r = await run(['sh', '-c', 'echo out; echo err >&2']);
    expect(r).toEqual({ code: 0, stdout: 'out\n', stderr: 'err\n' });
  });

  it('throws CommandError on a non-zero exit, with the same fields', async () => {
    const err = await run(['sh', '-c', 'echo why >&2; exit 3']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).result).toEqual({ code: 3, stdout: '', stderr: 'why\n' });
    expect((err as CommandError).message).toContain('exited 3: why');
  });

  it('returns a failure as a result with allowFailure', async () => {
    expect((await run(['sh', '-c', 'exit 7'], { allowFailure: true })).code).toBe(7);
  });

  it('feeds input on stdin, large input included', async () => {
    expect((await run(['cat'], { input: 'hello' })).stdout).toBe('hello');
    const big = 'x'.repeat(3 * 1024 * 1024);
    expect((await run(['wc', '-c'], { input: big })).stdout.trim()).toBe(String(big.length));
  });

  it('does not fail when the command leaves its input unread', async () => {
    expect((await run(['true'], { input: 'y'.repeat(1024 * 1024) })).code).toBe(0);
  });

  it('kills a command past its timeout', async () => {
    const r = await run(['sleep', '30'], { timeoutMs: 200, allowFailure: true });
    expect(r.code).toBe(128);
  });

  it('rejects with the errno code when the command does not exist', async () => {
    const err = (await run(['/nonexistent/warren-no-such-command']).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('ENOENT');
  });

  it('keeps concurrent commands apart', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => run(['sh', '-c', `sleep 0.0${i % 10}; echo ${i}`])),
    );
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
  });

  it('rejects an empty argv', async () => {
    await expect(run([])).rejects.toThrow('empty argv');
  });
});

describe('run: overlay mount and lazy unmount (made by system call in the spawner)', () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '') {
      await run(['umount', '-l', join(dir, 'root')], { allowFailure: true });
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('mounts an overlay, unmounts it, and fails like mount(8) when there is nothing to do', async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-exec-mount-'));
    const [lower, upper, work, root] = ['lower', 'upper', 'work', 'root'].map((d) => join(dir, d)) as [
      string,
      string,
      string,
      string,
    ];
    for (const d of [lower, upper, work, root]) await mkdir(d);
    await writeFile(join(lower, 'from-lower'), 'below');
    const options = `lowerdir=${lower},upperdir=${upper},workdir=${work}`;
    expect((await run(['mount', '-t', 'overlay', 'overlay', '-o', options, root])).code).toBe(0);
    expect(await readFile(join(root, 'from-lower'), 'utf8')).toBe('below');
    await writeFile(join(root, 'from-above'), 'above');
    expect(await readFile(join(upper, 'from-above'), 'utf8')).toBe('above');
    const mounted = await readFile('/proc/self/mountinfo', 'utf8');
    expect(mounted.split('\n').some((l) => l.split(' ')[4] === root)).toBe(true);

    expect((await run(['umount', '-l', root])).code).toBe(0);
    expect(await readdir(root)).toEqual([]);
    const again = await run(['umount', '-l', root], { allowFailure: true });
    expect(again.code).toBe(32);
    expect(again.stderr).toContain(root);

    const bad = await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${join(dir, 'missing')}`, root]).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(CommandError);
    expect((bad as CommandError).result.code).toBe(32);
  });
});

describe('run: nft commands without options (run through libnftables in the spawner)', () => {
  const table = `warren_exectest_${process.pid}`;
  afterAll(async () => {
    await run(['nft', 'delete', 'table', 'inet', table], { allowFailure: true });
  });

  it('adds, lists and deletes like the nft program, and fails like it', async () => {
    await run(['nft', 'add', 'table', 'inet', table]);
    await run(['nft', 'add', 'set', 'inet', table, 'egress', '{ type ipv4_addr; }']);
    await run(['nft', 'add', 'element', 'inet', table, 'egress', '{ 10.99.0.7 }']);
    const listed = await run(['nft', 'list', 'set', 'inet', table, 'egress']);
    expect(listed.stdout).toContain('10.99.0.7');
    // The same set read by the nft program itself (an option sends it to /usr/sbin/nft).
    const json = JSON.parse((await run(['nft', '-j', 'list', 'set', 'inet', table, 'egress'])).stdout) as {
      nftables: Array<{ set?: { elem?: string[] } }>;
    };
    expect(json.nftables.find((o) => o.set)?.set?.elem).toEqual(['10.99.0.7']);
    await run(['nft', 'delete', 'element', 'inet', table, 'egress', '{ 10.99.0.7 }']);
    const missing = await run(['nft', 'delete', 'element', 'inet', table, 'egress', '{ 10.99.0.7 }'], {
      allowFailure: true,
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Error');
    const bad = await run(['nft', 'add', 'element', 'inet', table, 'no-such-set', '{ 10.99.0.8 }']).catch(
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(CommandError);
  });
});

describe('warren-spawner.py', () => {
  it('answers mount, umount -l and option-less nft in-process, and runs anything else as a program', async () => {
    // No PATH: every command that needs a program fails to start, so an answer shows it was done in-process.
    const source = fileURLToPath(new URL('../../native/warren-spawner.py', import.meta.url));
    const child = spawn('/usr/bin/python3', ['-I', '-S', source], { env: { PATH: '/nonexistent' } });
    const requests = [
      { id: 1, argv: ['nft', 'list', 'tables'] },
      { id: 2, argv: ['umount', '-l', '/nonexistent/warren-not-mounted'] },
      { id: 3, argv: ['nft', '-j', 'list', 'tables'] },
      { id: 4, argv: ['umount', '/nonexistent/warren-not-mounted'] },
      // A malformed in-process request is answered as an error, not left without an answer.
      { id: 5, argv: ['umount', '-l', 5] },
    ];
    // Its stdin stays open until every answer is in: the spawner exits when its stdin closes.
    child.stdin.write(requests.map((r) => `${JSON.stringify({ ...r, timeout_ms: 10_000 })}\n`).join(''));
    const answers = new Map<number, { id: number; code?: number; error?: string; stderr?: string }>();
    let buffered = '';
    for await (const chunk of child.stdout) {
      buffered += String(chunk);
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const a = JSON.parse(buffered.slice(0, nl)) as { id: number; code?: number; error?: string; stderr?: string };
        answers.set(a.id, a);
        buffered = buffered.slice(nl + 1);
      }
      if (answers.size === requests.length) child.stdin.end();
    }
    expect(answers.get(1)).toMatchObject({ code: 0 });
    expect(answers.get(2)).toMatchObject({ code: 32 });
    expect(answers.get(2)?.stderr).toContain('/nonexistent/warren-not-mounted');
    expect(answers.get(3)).toMatchObject({ error: 'ENOENT' });
    expect(answers.get(4)).toMatchObject({ error: 'ENOENT' });
    expect(answers.get(5)).toMatchObject({ error: 'EIO' });
  });
});

describe('runLogged', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('appends output to the log and resolves on exit, though a child it left holds the log open', async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-exec-'));
    const log = join(dir, 'cmd.log');
    const pidFile = join(dir, 'pid');
    await runLogged(['sh', '-c', `echo hi; echo oops >&2; sleep 60 & echo $! > ${pidFile}`], log);
    const pid = Number(await readFile(pidFile, 'utf8'));
    try {
      expect(process.kill(pid, 0)).toBe(true); // the sleeper still runs and holds the log
      expect(await readFile(log, 'utf8')).toBe('hi\noops\n');
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('throws CommandError with the log tail as stderr', async () => {
    const log = join(dir, 'fail.log');
    const err = (await runLogged(['sh', '-c', 'echo broken; exit 4'], log).catch((e: unknown) => e)) as CommandError;
    expect(err).toBeInstanceOf(CommandError);
    expect(err.result.code).toBe(4);
    expect(err.result.stderr).toBe('broken\n');
  });

  it('stops a command past its timeout', async () => {
    const err = (await runLogged(['sleep', '30'], join(dir, 'slow.log'), { timeoutMs: 200 }).catch(
      (e: unknown) => e,
    )) as CommandError;
    expect(err).toBeInstanceOf(CommandError);
    expect(err.result.code).toBe(128);
  });
});
