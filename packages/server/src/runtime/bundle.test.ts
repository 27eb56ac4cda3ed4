import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_COMMAND,
  ensureRuntimeBundle,
  markUsedAndPrune,
  RUNTIME_BUNDLE_MOUNT,
  type RuntimeBundle,
} from './bundle.ts';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The agent stand-in run inside the chroot: reports where it runs, then asks
// warren-init (its parent) to shut down.
const AGENT = `
console.log(JSON.stringify({ execPath: process.execPath, version: process.version, ppid: process.ppid }));
process.kill(process.ppid, 'SIGTERM');
`;

// The agent's entry stand-in: records a "code cache" saying what recorded it, or runs the agent.
const BOOT = `
const out = process.env.WARREN_AGENT_CODE_CACHE_RECORD;
if (out) {
  const seen = { version: process.version, nodeOptions: process.env.NODE_OPTIONS ?? null, socket: process.env.WARREN_AGENT_SOCKET };
  require('node:fs').writeFileSync(out, JSON.stringify(seen));
  process.exit(0);
}
require('./agent.cjs');
`;

let work: string;
let bundle: RuntimeBundle;
let progress: string[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'warren-bundle-test-'));
  await writeFile(join(work, 'agent.cjs'), AGENT);
  await writeFile(join(work, 'boot.cjs'), BOOT);
  progress = [];
  bundle = await ensureRuntimeBundle({
    cacheDir: join(work, 'cache'),
    agentBundlePath: join(work, 'agent.cjs'),
    onProgress: (line) => progress.push(line),
  });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs a command to completion, collecting its output. */
function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('exit', (code) => resolve(code));
  });
}

describe('ensureRuntimeBundle', () => {
  it('lays out node, its libraries and loader, init and the agent', async () => {
    const dir = bundle.dir;
    expect(dir).toBe(join(work, 'cache', 'runtime', bundle.hash.slice(0, 16)));
    expect(bundle.cached).toBe(false);
    expect(progress.some((line) => line.includes('ready at'))).toBe(true);
    const libs = await readdir(join(dir, 'lib'));
    expect(libs).toEqual(expect.arrayContaining(['libc.so.6', 'ld-linux-x86-64.so.2']));
    expect(await readFile(join(dir, 'agent/agent.cjs'), 'utf8')).toBe(AGENT);
    expect(await readFile(join(dir, 'agent/boot.cjs'), 'utf8')).toBe(BOOT);
    for (const path of ['bin/node', 'bin/warren-init', 'bin/warren-pty', 'bin/warren-exec']) {
      expect((await stat(join(dir, path))).mode & 0o777).toBe(0o755);
    }
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { hash: string };
    expect(manifest.hash).toBe(bundle.hash);
    // Nothing left behind by the build.
    expect(await readdir(join(work, 'cache', 'runtime'))).toEqual([bundle.hash.slice(0, 16)]);
  });

  it('is cached: a second call returns the same directory without building', async () => {
    const started = performance.now();
    const again = await ensureRuntimeBundle({
      cacheDir: join(work, 'cache'),
      agentBundlePath: join(work, 'agent.cjs'),
    });
    expect(performance.now() - started).toBeLessThan(500);
    expect(again).toEqual({ ...bundle, cached: true });
  });

  it('records the agent code cache with the bundled node and no NODE_OPTIONS of the server', async () => {
    const recorded = JSON.parse(await readFile(join(bundle.dir, 'agent/agent.cjs.cache'), 'utf8')) as {
      version: string;
      nodeOptions: string | null;
      socket: string;
    };
    expect(recorded.version).toBe(process.version);
    expect(recorded.nodeOptions).toBeNull();
    expect(recorded.socket).toMatch(/agent\.sock$/);
    const manifest = JSON.parse(await readFile(join(bundle.dir, 'manifest.json'), 'utf8')) as {
      agentCodeCacheBytes: number | null;
    };
    expect(manifest.agentCodeCacheBytes).toBeGreaterThan(0);
  });

  it('ships a bundle without a code cache when recording fails', async () => {
    const dir = join(work, 'failing-recorder');
    await mkdir(dir);
    await writeFile(join(dir, 'agent.cjs'), AGENT);
    await writeFile(
      join(dir, 'boot.cjs'),
      `${BOOT.replace('const out', 'if (process.env.WARREN_AGENT_CODE_CACHE_RECORD) { console.error("no luck"); process.exit(3); }\nconst out')}`,
    );
    const lines: string[] = [];
    const next = await ensureRuntimeBundle({
      cacheDir: join(work, 'cache'),
      agentBundlePath: join(dir, 'agent.cjs'),
      onProgress: (line) => lines.push(line),
    });
    expect(lines.some((line) => line.includes('no agent code cache') && line.includes('no luck'))).toBe(true);
    expect(await readdir(join(next.dir, 'agent'))).not.toContain('agent.cjs.cache');
    await rm(next.dir, { recursive: true });
  });

  it('makes a new bundle when the agent changes', async () => {
    const other = join(work, 'v2');
    await mkdir(other);
    await writeFile(join(other, 'agent.cjs'), `${AGENT}\n// v2\n`);
    await writeFile(join(other, 'boot.cjs'), BOOT);
    const next = await ensureRuntimeBundle({
      cacheDir: join(work, 'cache'),
      agentBundlePath: join(other, 'agent.cjs'),
    });
    expect(next.hash).not.toBe(bundle.hash);
    expect(next.dir).not.toBe(bundle.dir);
    await rm(next.dir, { recursive: true });
  });

  it('names the build command when the agent bundle is missing', async () => {
    await expect(
      ensureRuntimeBundle({ cacheDir: join(work, 'cache'), agentBundlePath: join(work, 'missing.cjs') }),
    ).rejects.toThrow(/build:agent/);
  });

  it('names the build command when the agent entry is missing', async () => {
    const dir = join(work, 'no-entry');
    await mkdir(dir);
    await writeFile(join(dir, 'agent.cjs'), AGENT);
    await expect(
      ensureRuntimeBundle({ cacheDir: join(work, 'cache'), agentBundlePath: join(dir, 'agent.cjs') }),
    ).rejects.toThrow(/boot\.cjs.*build:agent/);
  });
});

describe.skipIf(!isRoot)('the bundle inside a root filesystem with no libc', () => {
  /**
   * Runs `args` chrooted into an empty root (only /proc and the bundle,
   * bind-mounted read-only at /.warren) in private mount and pid namespaces.
   */
  async function inEmptyRoot(args: string[]) {
    const root = await mkdtemp(join(work, 'root-'));
    await mkdir(join(root, RUNTIME_BUNDLE_MOUNT), { recursive: true });
    await mkdir(join(root, 'proc'));
    await mkdir(join(root, 'tmp'));
    expect((await readdir(root)).sort()).toEqual(['.warren', 'proc', 'tmp']);
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mount --bind "$1" "$2$3"',
      'mount -o remount,bind,ro "$2$3"',
      'mount -t proc proc "$2/proc"',
      'root=$2',
      'shift 3',
      'exec chroot "$root" "$@"',
    ].join('\n');
    return run(
      'unshare',
      ['--mount', '--pid', '--fork', 'sh', '-c', script, 'sh', bundle.dir, root, RUNTIME_BUNDLE_MOUNT, ...args],
      {
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      },
    );
  }

  it('runs node from /.warren with process.execPath pointing there', async () => {
    const probe = [
      'const net = require("node:net");',
      'console.log(process.execPath);',
      'console.log(require("node:child_process").execFileSync(process.execPath, ["-p", "6*7"]).toString().trim());',
      'console.log(new Intl.NumberFormat("de-DE").format(1234.5));',
      'const s = net.createServer((c) => c.end("pong")).listen("/tmp/agent.sock", () =>',
      '  net.connect("/tmp/agent.sock").on("data", (d) => { console.log(d.toString()); s.close(); }));',
    ].join('\n');
    const result = await inEmptyRoot([`${RUNTIME_BUNDLE_MOUNT}/bin/node`, '-e', probe]);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim().split('\n')).toEqual([`${RUNTIME_BUNDLE_MOUNT}/bin/node`, '42', '1.234,5', 'pong']);
    expect(result.code).toBe(0);
  });

  it('runs warren-init (static) as PID 1 with the agent under it', async () => {
    const m = RUNTIME_BUNDLE_MOUNT;
    const result = await inEmptyRoot([...AGENT_COMMAND]);
    const report = JSON.parse(result.stdout.trim().split('\n')[0] ?? '{}') as { execPath?: string; ppid?: number };
    expect(report.execPath).toBe(`${m}/bin/node`);
    expect(report.ppid).toBe(1);
    // The agent asked init to stop: init forwards SIGTERM and exits once the agent has exited.
    expect([0, 143]).toContain(result.code);
  });
});

describe('markUsedAndPrune', () => {
  it('keeps the bundle in use, the four most recently used and anything used within a day; removes the rest', async () => {
    const dir = await mkdtemp(join(work, 'prune-'));
    const now = Date.UTC(2026, 10, 29, 12);
    const hour = 3600_000;
    // name -> hours since last use
    const ages: Record<string, number> = {
      aaaaaaaaaaaaaaa1: 100, // in use: kept although oldest
      aaaaaaaaaaaaaaa2: 30,
      aaaaaaaaaaaaaaa3: 40,
      aaaaaaaaaaaaaaa4: 50,
      aaaaaaaaaaaaaaa5: 60, // fifth most recent (with the one in use): removed
      aaaaaaaaaaaaaaa6: 70, // removed
      '.tmp-0123456789abcdef-x': 2, // abandoned build: removed
      '.tmp-fedcba9876543210-y': 0.1, // a build in progress: kept
      'not-a-bundle': 500, // not ours: kept
    };
    for (const [name, h] of Object.entries(ages)) {
      await mkdir(join(dir, name));
      const t = new Date(now - h * hour);
      await utimes(join(dir, name), t, t);
    }
    const removed = await markUsedAndPrune(dir, join(dir, 'aaaaaaaaaaaaaaa1'), now);
    expect(removed.map((p) => p.slice(dir.length + 1)).sort()).toEqual([
      '.tmp-0123456789abcdef-x',
      'aaaaaaaaaaaaaaa5',
      'aaaaaaaaaaaaaaa6',
    ]);
    expect((await readdir(dir)).sort()).toEqual([
      '.tmp-fedcba9876543210-y',
      'aaaaaaaaaaaaaaa1',
      'aaaaaaaaaaaaaaa2',
      'aaaaaaaaaaaaaaa3',
      'aaaaaaaaaaaaaaa4',
      'not-a-bundle',
    ]);
    // The bundle in use is marked as used now.
    expect((await stat(join(dir, 'aaaaaaaaaaaaaaa1'))).mtimeMs).toBe(now);
  });

  it('keeps every bundle used within a day, however many', async () => {
    const dir = await mkdtemp(join(work, 'prune-'));
    const now = Date.now();
    for (let i = 0; i < 7; i++) {
      const name = `bbbbbbbbbbbbbbb${i}`;
      await mkdir(join(dir, name));
      const t = new Date(now - i * 3600_000);
      await utimes(join(dir, name), t, t);
    }
    expect(await markUsedAndPrune(dir, join(dir, 'bbbbbbbbbbbbbbb0'), now)).toEqual([]);
    expect(await readdir(dir)).toHaveLength(7);
  });
});

describe('warren-init', () => {
  const init = () => join(bundle.dir, 'bin/warren-init');

  /** Children of `pid` as [pid, state, command] from /proc. */
  async function childrenOf(pid: number): Promise<Array<[number, string, string]>> {
    const out: Array<[number, string, string]> = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
      const match = /^\d+ \((.*)\) (\S) (\d+)/s.exec(stat);
      if (match && Number(match[3]) === pid) out.push([Number(name), match[2]!, match[1]!]);
    }
    return out;
  }

  it('restarts a dying agent with backoff and exits on SIGTERM', async () => {
    const log = join(work, 'starts.log');
    const child = spawn(init(), ['sh', '-c', 'echo start >> "$START_LOG"; exit 1'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', START_LOG: log },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // Starts at ~0, 100, 300, 700 ms (backoff 100, 200, 400, …).
    await sleep(1000);
    const starts = (await readFile(log, 'utf8')).trim().split('\n').length;
    expect(starts).toBeGreaterThanOrEqual(3);
    expect(starts).toBeLessThanOrEqual(5);
    expect(stderr).toContain('agent exited with code 1; restarting in');
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(143);
  });

  it('reaps orphaned grandchildren', async () => {
    // The agent leaves an orphan (sleep 0.3) that is re-parented to init, then waits.
    const child = spawn(init(), ['sh', '-c', '(sleep 0.3 &); exec sleep 30'], { stdio: 'ignore' });
    const pid = child.pid!;
    await sleep(150);
    const before = await childrenOf(pid);
    expect(before.filter(([, , comm]) => comm === 'sleep')).toHaveLength(2);
    await sleep(600);
    const after = await childrenOf(pid);
    expect(after.filter(([, state]) => state === 'Z')).toEqual([]);
    expect(after).toHaveLength(1);
    child.kill('SIGTERM');
    // The agent (sleep 30) dies of the forwarded SIGTERM; init exits with its status.
    expect(await exited(child)).toBe(143);
  });

  it('forwards SIGHUP and SIGTERM to the agent and exits with its code', async () => {
    const log = join(work, 'signals.log');
    const agent = [
      'trap \'echo HUP >> "$SIG_LOG"\' HUP',
      'trap \'echo TERM >> "$SIG_LOG"; exit 7\' TERM',
      'echo ready >> "$SIG_LOG"',
      'while :; do sleep 0.05; done',
    ].join('\n');
    const child = spawn(init(), ['sh', '-c', agent], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SIG_LOG: log },
      stdio: 'ignore',
    });
    await sleep(300);
    child.kill('SIGHUP');
    await sleep(300);
    expect(child.exitCode).toBe(null);
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(7);
    expect((await readFile(log, 'utf8')).trim().split('\n')).toEqual(['ready', 'HUP', 'TERM']);
  });
});
