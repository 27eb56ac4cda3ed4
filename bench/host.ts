import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { msSince } from './stats.ts';

/** Runs a host command to completion; resolves with its stdout. @throws Error when it exits non-zero. */
export function sh(argv: readonly string[], options: { input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Spawns `argv` with no stdin, waits until it exits and its output closed; returns ms. @throws on a non-zero exit. */
export function timedSpawn(argv: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.resume();
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = msSince(start);
      if (code === 0) resolve(ms);
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

/** Bytes of MemTotal and MemAvailable from /proc/meminfo. */
export async function meminfo(): Promise<{ totalBytes: number; availableBytes: number }> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024;
  return { totalBytes: kb('MemTotal'), availableBytes: kb('MemAvailable') };
}

/** Memory charged to one v1 memory cgroup (`memory.usage_in_bytes`: RSS + page cache + kernel memory it owns). */
export async function cgroupMemoryBytes(cgroupPath: string): Promise<number> {
  return Number((await readFile(`/sys/fs/cgroup/memory/${cgroupPath}/memory.usage_in_bytes`, 'utf8')).trim());
}

/** Sum of PSS (proportional set size, shared pages split among their users) over the processes of a pids cgroup. */
export async function cgroupPssBytes(
  cgroupPath: string,
): Promise<{ pssBytes: number; rssBytes: number; procs: number }> {
  const pids = (await readFile(`/sys/fs/cgroup/pids/${cgroupPath}/cgroup.procs`, 'utf8')).split('\n').filter(Boolean);
  let pss = 0;
  let rss = 0;
  for (const pid of pids) {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    pss += Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
    rss += Number(/^Rss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
  }
  return { pssBytes: pss, rssBytes: rss, procs: pids.length };
}

/**
 * Bare OCI containers run with `crun` straight from a template's root
 * filesystem (read-only, `crun spec` defaults: pid/net/ipc/uts/mount
 * namespaces, no user namespace, overlay, seccomp, network or agent): the
 * floor Warren's sandboxes are measured against.
 */
export class BareContainers {
  private readonly dir: string;
  private readonly crunRoot: string;
  private readonly cgroupParent: string;
  private count = 0;
  private readonly live = new Set<string>();

  constructor(options: { workDir: string; cgroupParent: string }) {
    this.dir = join(options.workDir, 'bare');
    this.crunRoot = join(options.workDir, 'bare-crun');
    this.cgroupParent = options.cgroupParent;
  }

  private crun(...args: string[]): string[] {
    return ['crun', '--root', this.crunRoot, ...args];
  }

  /** Writes a bundle for one container running `args` on `rootfs`; returns its id and bundle dir. */
  private async bundle(rootfs: string, args: string[]): Promise<{ id: string; bundle: string; cgroup: string }> {
    const id = `warren-bench-bare-${process.pid}-${this.count++}`;
    const bundle = join(this.dir, id);
    await mkdir(bundle, { recursive: true });
    await sh(['crun', 'spec', '--bundle', bundle]);
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
      process: { args: string[]; terminal: boolean };
      root: { path: string; readonly: boolean };
      linux: { cgroupsPath?: string };
    };
    config.process.args = args;
    config.process.terminal = false;
    config.root = { path: rootfs, readonly: true };
    const cgroup = `${this.cgroupParent}/${id}`;
    config.linux.cgroupsPath = cgroup;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
    return { id, bundle, cgroup };
  }

  /** Time of one `crun run` of `/bin/true` (bundle prepared beforehand, not timed). */
  async runTrue(rootfs: string): Promise<number> {
    const { id, bundle } = await this.bundle(rootfs, ['/bin/true']);
    try {
      return await timedSpawn(this.crun('run', '--bundle', bundle, id));
    } finally {
      await rm(bundle, { recursive: true, force: true });
    }
  }

  /** Starts a detached container running `sleep infinity`; returns its id and cgroup path. */
  async startIdle(rootfs: string): Promise<{ id: string; cgroup: string }> {
    const { id, bundle, cgroup } = await this.bundle(rootfs, ['/bin/sleep', 'infinity']);
    this.live.add(id);
    // The container inherits crun's stdio: give it none, and wait for crun's exit rather than for its output to close.
    await new Promise<void>((resolve, reject) => {
      const child = spawn('crun', ['--root', this.crunRoot, 'run', '--detach', '--bundle', bundle, id], {
        stdio: 'ignore',
      });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`crun run --detach exited ${code}`))));
    });
    return { id, cgroup };
  }

  /** Time of one `crun exec` of `/bin/true` in a running container. */
  execTrue(id: string): Promise<number> {
    return timedSpawn(this.crun('exec', id, '/bin/true'));
  }

  pause(id: string): Promise<number> {
    return timedSpawn(this.crun('pause', id));
  }

  resume(id: string): Promise<number> {
    return timedSpawn(this.crun('resume', id));
  }

  /** Time of `crun delete --force` of a running container (its bundle is removed afterwards, untimed). */
  async delete(id: string): Promise<number> {
    const ms = await timedSpawn(this.crun('delete', '--force', id));
    this.live.delete(id);
    await rm(join(this.dir, id), { recursive: true, force: true });
    return ms;
  }

  /** Deletes every container this object started and its files. */
  async cleanup(): Promise<void> {
    for (const id of this.live) {
      await sh(this.crun('delete', '--force', id)).catch(() => undefined);
    }
    this.live.clear();
    await rm(this.dir, { recursive: true, force: true });
    await rm(this.crunRoot, { recursive: true, force: true });
  }
}

/** Time from a `print` in a host python3 child to its line arriving in this process, per line. */
export function hostPrintLatency(lines: number, gapMs: number): Promise<number[]> {
  const code = `import time,sys\nfor i in range(${lines}):\n    time.sleep(${gapMs / 1000})\n    print(time.time_ns(), flush=True)\n`;
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    const samples: number[] = [];
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      const now = wallClockNs();
      buf += b.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        samples.push(Number(now - BigInt(buf.slice(0, nl).trim())) / 1e6);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
    });
    child.on('error', reject);
    child.on('close', () => resolve(samples));
  });
}

/** Wall-clock time in ns with sub-ms precision (same clock python's `time.time_ns()` reads). */
export function wallClockNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e3)) * 1000n;
}

/**
 * `dd` write (from /dev/zero) and read (to /dev/null) of `bytes` in `dir`; returns ms each. By default through
 * the page cache with no fsync, like the agent. With `disk`, the disk's own speed: the write ends with an
 * `fdatasync` and the read bypasses the page cache (`O_DIRECT`).
 */
export async function ddTimes(
  dir: string,
  bytes: number,
  { disk = false }: { disk?: boolean } = {},
): Promise<{ writeMs: number; readMs: number }> {
  const file = join(dir, `dd-${process.pid}.bin`);
  const bs = Math.min(bytes, 1024 * 1024);
  const count = String(Math.max(1, Math.round(bytes / bs)));
  try {
    const writeMs = await timedSpawn([
      'dd',
      'if=/dev/zero',
      `of=${file}`,
      `bs=${bs}`,
      `count=${count}`,
      ...(disk ? ['conv=fdatasync'] : []),
      'status=none',
    ]);
    const readMs = await timedSpawn([
      'dd',
      `if=${file}`,
      'of=/dev/null',
      `bs=${bs}`,
      ...(disk ? ['iflag=direct'] : []),
      'status=none',
    ]);
    return { writeMs, readMs };
  } finally {
    await rm(file, { force: true });
  }
}
