import { readFile, statfs } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { listProcEntries } from './proc-fs.ts';

/** A CPU sample closer than this to the previous one is not used for a rate. */
const MIN_SAMPLE_INTERVAL_MS = 200;
/** When there is no earlier sample, how long to wait for a second one. */
const FIRST_SAMPLE_WINDOW_MS = 100;
/** cgroup v1 reports "no limit" as a huge page-aligned number. */
const UNLIMITED_THRESHOLD = 2 ** 62;

/** Resource usage of the sandbox, from its cgroup (or /proc when there is none). */
export interface CgroupUsage {
  /** Where the numbers come from. */
  source: 'cgroup-v1' | 'cgroup-v2' | 'host';
  memoryUsageBytes: number;
  /** Usage minus inactive page cache: what the OOM killer weighs. */
  memoryWorkingSetBytes: number;
  memoryLimitBytes: number;
  /** CPU time used by every process of the sandbox, in ns. */
  cpuUsageNs: number | null;
  /** CPUs the sandbox may use (quota / period), or the machine's count. */
  cpuLimitCores: number;
  pidsCurrent: number | null;
  pidsMax: number | null;
}

/** Everything the metrics routes report about the sandbox. */
export interface SystemSample extends CgroupUsage {
  cpuUsagePercent: number;
  disk: { total: number; used: number; free: number };
  processCount: number;
  runningProcesses: number;
  loadAverage: number[];
}

async function readText(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  );
}

async function readNumber(path: string): Promise<number | undefined> {
  const text = await readText(path);
  if (text === undefined || text === 'max') return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

function statField(stat: string | undefined, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(stat ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * Reads the sandbox's resource usage: cgroup v1 files (as mounted read-only
 * inside a sandbox with a cgroup namespace), cgroup v2 files, or host-wide
 * numbers as a last resort. CPU percentages are rates between samples.
 */
export class SystemMetrics {
  readonly #root: string;
  #lastCpu: { ns: number; at: number } | undefined;

  /** @param cgroupRoot where the cgroup hierarchy is mounted. @default '/sys/fs/cgroup' */
  constructor(cgroupRoot = '/sys/fs/cgroup') {
    this.#root = cgroupRoot;
  }

  /** Current cgroup counters. */
  async usage(): Promise<CgroupUsage> {
    const v1 = await this.#v1();
    if (v1) return v1;
    const v2 = await this.#v2();
    if (v2) return v2;
    const total = totalmem();
    return {
      source: 'host',
      memoryUsageBytes: total - freemem(),
      memoryWorkingSetBytes: total - freemem(),
      memoryLimitBytes: total,
      cpuUsageNs: null,
      cpuLimitCores: cpus().length,
      pidsCurrent: null,
      pidsMax: null,
    };
  }

  /** cgroup counters plus CPU rate, disk and process counts. */
  async sample(): Promise<SystemSample> {
    let usage = await this.usage();
    let cpuUsagePercent = 0;
    if (usage.cpuUsageNs !== null) {
      let base = this.#lastCpu;
      if (base === undefined || performance.now() - base.at < MIN_SAMPLE_INTERVAL_MS) {
        // No usable earlier sample: measure over a short window of our own.
        base = { ns: usage.cpuUsageNs, at: performance.now() };
        await new Promise((resolve) => setTimeout(resolve, FIRST_SAMPLE_WINDOW_MS));
        usage = await this.usage();
      }
      const at = performance.now();
      const ns = usage.cpuUsageNs ?? base.ns;
      const elapsedNs = (at - base.at) * 1e6;
      if (elapsedNs > 0) cpuUsagePercent = Math.max(0, ((ns - base.ns) / elapsedNs / usage.cpuLimitCores) * 100);
      this.#lastCpu = { ns, at };
    }
    const [disk, procs] = await Promise.all([
      statfs('/').then(
        (s) => ({ total: s.blocks * s.bsize, free: s.bavail * s.bsize, used: (s.blocks - s.bfree) * s.bsize }),
        () => ({ total: 0, used: 0, free: 0 }),
      ),
      listProcEntries(),
    ]);
    return {
      ...usage,
      cpuUsagePercent: Math.round(cpuUsagePercent * 100) / 100,
      disk,
      processCount: procs.length,
      runningProcesses: procs.filter((p) => p.state === 'R').length,
      loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    };
  }

  async #v1(): Promise<CgroupUsage | undefined> {
    const mem = join(this.#root, 'memory');
    const usage = await readNumber(join(mem, 'memory.usage_in_bytes'));
    if (usage === undefined) return undefined;
    const [limit, stat, cpu, pids, pidsMax, quota, period] = await Promise.all([
      readNumber(join(mem, 'memory.limit_in_bytes')),
      readText(join(mem, 'memory.stat')),
      readNumber(join(this.#root, 'cpuacct', 'cpuacct.usage')),
      readNumber(join(this.#root, 'pids', 'pids.current')),
      readNumber(join(this.#root, 'pids', 'pids.max')),
      readNumber(join(this.#root, 'cpu', 'cpu.cfs_quota_us')),
      readNumber(join(this.#root, 'cpu', 'cpu.cfs_period_us')),
    ]);
    const inactiveFile = statField(stat, 'total_inactive_file') ?? statField(stat, 'inactive_file') ?? 0;
    return {
      source: 'cgroup-v1',
      memoryUsageBytes: usage,
      memoryWorkingSetBytes: Math.max(0, usage - inactiveFile),
      memoryLimitBytes: limit !== undefined && limit < UNLIMITED_THRESHOLD ? Math.min(limit, totalmem()) : totalmem(),
      cpuUsageNs: cpu ?? null,
      cpuLimitCores: quota !== undefined && quota > 0 && period ? quota / period : cpus().length,
      pidsCurrent: pids ?? null,
      pidsMax: pidsMax ?? null,
    };
  }

  async #v2(): Promise<CgroupUsage | undefined> {
    const usage = await readNumber(join(this.#root, 'memory.current'));
    if (usage === undefined) return undefined;
    const [limit, stat, cpuStat, pids, pidsMax, cpuMax] = await Promise.all([
      readNumber(join(this.#root, 'memory.max')),
      readText(join(this.#root, 'memory.stat')),
      readText(join(this.#root, 'cpu.stat')),
      readNumber(join(this.#root, 'pids.current')),
      readNumber(join(this.#root, 'pids.max')),
      readText(join(this.#root, 'cpu.max')),
    ]);
    const [quota, period] = (cpuMax ?? 'max').split(' ');
    const usageUsec = statField(cpuStat, 'usage_usec');
    return {
      source: 'cgroup-v2',
      memoryUsageBytes: usage,
      memoryWorkingSetBytes: Math.max(0, usage - (statField(stat, 'inactive_file') ?? 0)),
      memoryLimitBytes: limit !== undefined ? Math.min(limit, totalmem()) : totalmem(),
      cpuUsageNs: usageUsec === undefined ? null : usageUsec * 1000,
      cpuLimitCores: quota && quota !== 'max' && Number(period) > 0 ? Number(quota) / Number(period) : cpus().length,
      pidsCurrent: pids ?? null,
      pidsMax: pidsMax ?? null,
    };
  }
}
