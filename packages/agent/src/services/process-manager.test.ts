import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, isAlive } from '../test-helpers.ts';
import { ExecHelper } from './exec-helper.ts';
import { ProcessManager, type SpawnOptions } from './process-manager.ts';

const EXEC_SOURCE = fileURLToPath(new URL('../../../server/native/warren-exec.c', import.meta.url));
const env = { PATH: '/usr/local/bin:/usr/bin:/bin' };
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-pm-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sh(script: string, extra: Partial<SpawnOptions> = {}): SpawnOptions {
  return { command: 'bash', args: ['-c', script], cwd: dir, env, timeoutMs: 10_000, maxOutputBytes: 1 << 20, ...extra };
}

// Every behaviour holds whether the child is forked by node or started by the exec helper (warren-exec).
describe.each(['direct', 'exec helper'] as const)('ProcessManager (%s)', (mode) => {
  let manager = new ProcessManager();
  let helper: ExecHelper | undefined;

  beforeAll(async () => {
    if (mode === 'direct') return;
    const path = join(dir, 'warren-exec');
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', path, EXEC_SOURCE]);
    helper = new ExecHelper({ path });
    helper.start();
    expect(await eventually(() => helper?.ready === true)).toBe(true);
    manager = new ProcessManager({ execHelper: helper });
  });
  afterAll(() => {
    manager.killAll();
    helper?.close();
  });

  it('starts the child through the exec helper when there is one', async () => {
    const r = await manager.run(sh('echo $PPID'));
    expect(Number(r.stdout.trim())).toBe(helper?.pid ?? process.pid);
  });

  it('captures stdout, stderr and the exit code', async () => {
    const r = await manager.run(sh('echo out; echo err >&2; exit 3'));
    expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3, timedOut: false, signal: null });
    expect(r.pid).toBeGreaterThan(0);
  });

  it('runs in the given cwd with exactly the given env', async () => {
    const r = await manager.run(sh('pwd; env | sort', { env: { ...env, ONLY: 'me', EQUALS: 'a=b c' } }));
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(dir);
    expect(lines).toContain('ONLY=me');
    expect(lines).toContain('EQUALS=a=b c');
    expect(lines.some((l) => l.startsWith('WARREN_'))).toBe(false);
  });

  it('reports 128+signal when the process is killed by a signal', async () => {
    const r = await manager.run(sh('kill -TERM $$'));
    expect(r.exitCode).toBe(143);
    expect(r.signal).toBe('SIGTERM');
  });

  it('reports 127 when the executable does not exist', async () => {
    const r = await manager.run({ ...sh(''), command: 'warren-no-such-binary', args: [] });
    expect(r.exitCode).toBe(127);
    expect(r.spawnError).toContain('command not found');
  });

  it('reports 127 when the file is not executable', async () => {
    const file = join(dir, `not-executable-${mode}`);
    await writeFile(file, 'echo hi\n');
    await chmod(file, 0o644);
    const r = await manager.run({ ...sh(''), command: file, args: [] });
    expect(r).toMatchObject({ exitCode: 127, spawnError: `${file}: permission denied`, pid: undefined });
  });

  it('looks the command up in the PATH of the child, not of the agent', async () => {
    const bin = join(dir, `bin-${mode}`);
    await rm(bin, { recursive: true, force: true });
    execFileSync('mkdir', [bin]);
    await writeFile(join(bin, 'warren-hello'), '#!/bin/sh\necho hello "$@"\n', { mode: 0o755 });
    const r = await manager.run({ ...sh(''), command: 'warren-hello', args: ['a b'], env: { PATH: `${bin}:/bin` } });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'hello a b\n' });
  });

  it('runs 50 processes at once', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        manager.run(sh(`sleep 0.0$((${i} % 5)); echo ${i}; echo e${i} >&2; exit $((${i} % 7))`)),
      ),
    );
    results.forEach((r, i) => {
      expect(r).toMatchObject({ exitCode: i % 7, stdout: `${i}\n`, stderr: `e${i}\n`, timedOut: false });
    });
  });

  it('pauses the output for a slow consumer and loses nothing', async () => {
    let seen = 0;
    const proc = manager.start(
      sh('head -c 3000000 /dev/zero; echo end >&2', { maxOutputBytes: 0, onStdout: (c) => (seen += c.length) }),
    );
    proc.pauseOutput();
    await new Promise((r) => setTimeout(r, 300));
    // The child is blocked writing: at most a few pipe buffers arrived before the pause took effect.
    expect(seen).toBeLessThan(1_000_000);
    expect(proc.running).toBe(true);
    proc.resumeOutput();
    const r = await proc.wait();
    expect(seen).toBe(3_000_000);
    expect(r).toMatchObject({ exitCode: 0, stdoutTruncated: true, stderr: '' });
  });

  it('puts every child in its own process group', async () => {
    const r = await manager.run(sh('ps -o pgid= -p $$'));
    expect(Number(r.stdout.trim())).toBe(r.pid);
  });

  it('kills the whole process group on timeout, grandchildren included', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const started = Date.now();
    const r = await manager.run(sh(`sleep 300 & echo $! > ${pidFile}; wait`, { timeoutMs: 500 }));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBe(124);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(grandchild).toBeGreaterThan(0);
    expect(await eventually(() => !isAlive(grandchild))).toBe(true);
  });

  it('does not hang when a background process keeps the pipes open', async () => {
    const pidFile = join(dir, 'orphan.pid');
    const started = Date.now();
    const r = await manager.run(sh(`sleep 30 & echo $! > ${pidFile}; echo done`, { timeoutMs: 20_000 }));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'done\n', timedOut: false });
    process.kill(Number(await readFile(pidFile, 'utf8')), 'SIGKILL');
  });

  it('keeps memory bounded and flags truncation when a process prints a lot', async () => {
    const limit = 64 * 1024;
    // ~20 MB on stdout and ~1 MB on stderr; the process must run to completion (pipe drained).
    const r = await manager.run(
      sh('head -c 20000000 /dev/zero | tr "\\0" a; head -c 1000000 /dev/zero | tr "\\0" b >&2; echo fin >&2', {
        maxOutputBytes: limit,
      }),
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(limit);
    expect(r.stdout).toBe('a'.repeat(limit));
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stderr.length).toBe(limit);
    expect(r.stderrTruncated).toBe(true);
  });

  it('tracks running processes and can kill them', async () => {
    const proc = manager.start(sh('sleep 30'));
    expect(manager.list().map((p) => p.id)).toContain(proc.id);
    expect(proc.running).toBe(true);
    proc.kill('SIGKILL');
    const r = await proc.wait();
    expect(r.exitCode).toBe(137);
    expect(manager.list().map((p) => p.id)).not.toContain(proc.id);
  });
});
