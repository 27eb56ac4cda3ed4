import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
});
