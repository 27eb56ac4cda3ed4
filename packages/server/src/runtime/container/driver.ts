import { chownSync, type FSWatcher, mkdirSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { run, runLogged } from '../../internal/exec.ts';
import { SANDBOX_ID_SHIFT } from '../../templates/builder.ts';
import type { BootSpec, Driver } from '../driver.ts';
import { type HostNetwork, vethName } from './network.ts';
import { BACKGROUND_CPU_SHARES, buildSandboxSpec } from './spec.ts';

export interface ContainerDriverOptions {
  /** Directory holding one subdirectory per sandbox (upper layer, config, run dir). */
  sandboxesDir: string;
  /** crun state directory (`crun --root`). */
  crunRoot: string;
  /** Runtime bundle directory (node, agent, init), mounted read-only in every sandbox. */
  bundleDir: string;
  network: HostNetwork;
  /** Parent cgroup (relative to each v1 hierarchy) of every sandbox cgroup. */
  cgroupParent: string;
  /** How long a boot may take until the agent answers. */
  bootTimeoutMs: number;
}

/** v1 hierarchies whose per-sandbox cgroups crun creates and removes. */
export const CGROUP_CONTROLLERS = [
  'memory',
  'pids',
  'cpu',
  'cpuacct',
  'cpuset',
  'blkio',
  'devices',
  'freezer',
  'hugetlb',
];

/** Whether a process exists and has not finished exiting (not a zombie). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

let openFileLimit: number | undefined;

/** The server's hard open-file limit (capped at 65,536), read once: it does not change while the server runs. */
function hostOpenFileLimit(): number {
  if (openFileLimit === undefined) {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    const hard = m?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m?.[1] ?? 1024);
    openFileLimit = Math.min(hard, 65_536);
  }
  return openFileLimit;
}

/** Whether `path` is a mount point in the server's mount namespace (mountinfo field 5, octal escapes decoded). */
async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint === undefined) continue;
    if (mountPoint.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === path) {
      return true;
    }
  }
  return false;
}

/**
 * With WARREN_PROFILE_BOOT=1, writes how long each boot phase took to stderr
 * (one line per boot); otherwise does nothing.
 */
function bootPhases(sandboxId: string): { mark: (phase: string) => void } {
  if (process.env.WARREN_PROFILE_BOOT !== '1') return { mark: () => undefined };
  let last = performance.now();
  const parts: string[] = [];
  return {
    mark(phase) {
      const now = performance.now();
      parts.push(`${phase}=${(now - last).toFixed(1)}`);
      last = now;
      if (phase === 'agent-ready') process.stderr.write(`[boot-profile] ${sandboxId} ${parts.join(' ')} ms\n`);
    },
  };
}

/**
 * Wakes a polling loop when a file or directory changes (inotify, through
 * `fs.watch`) instead of leaving it to a fixed interval. Each look at the
 * state starts with {@link mark}; {@link next} then resolves at once if
 * anything changed since, else at the next change or after `maxMs`. Without
 * a watch (no such path, no inotify) only the timeout remains.
 */
class ChangeWaiter {
  readonly watching: boolean;
  #changed = false;
  #wake: (() => void) | undefined;
  #watcher: FSWatcher | undefined;

  constructor(path: string) {
    try {
      this.#watcher = watch(path, () => {
        this.#changed = true;
        this.#wake?.();
      });
      this.#watcher.on('error', () => undefined);
    } catch {
      // no watch: the timeout alone
    }
    this.watching = this.#watcher !== undefined;
  }

  /** A look at the state begins: changes from now on end the next wait. */
  mark(): void {
    this.#changed = false;
  }

  /** Resolves when something changed since {@link mark}, or after `maxMs`. */
  next(maxMs: number): Promise<void> {
    if (this.#changed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#settle(resolve), maxMs);
      this.#wake = () => {
        clearTimeout(timer);
        this.#settle(resolve);
      };
    });
  }

  close(): void {
    this.#watcher?.close();
  }

  #settle(resolve: () => void): void {
    this.#wake = undefined;
    resolve();
  }
}

/** Longest wait between two readiness polls: a fallback, the socket's appearance wakes the poll at once. */
const AGENT_POLL_MAX_MS = 20;

/**
 * Polls the agent's /health over its unix socket until it answers 200. The
 * next poll is made as soon as anything changes in the socket's directory
 * (the agent creating its socket), or after at most {@link AGENT_POLL_MAX_MS}:
 * a fixed poll interval either adds half an interval to every boot or costs a
 * failed connect every millisecond or two.
 */
async function waitForAgent(socketPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer';
  const changes = new ChangeWaiter(dirname(socketPath));
  try {
    while (Date.now() < deadline) {
      changes.mark();
      const status = await new Promise<number | string>((resolve) => {
        const req = request({ socketPath, path: '/health', method: 'GET', timeout: 1000 }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', (e) => resolve(e.message));
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.end();
      });
      if (status === 200) return;
      lastError = String(status);
      // A change during the poll above is not waited for again.
      await changes.next(AGENT_POLL_MAX_MS);
    }
  } finally {
    changes.close();
  }
  throw new Error(`agent did not become ready within ${timeoutMs} ms (${lastError})`);
}

/**
 * Runs each sandbox as a crun container: an overlay root (template below, a
 * private upper layer above) mounted only until the container holds it, new
 * namespaces of every kind, cgroup limits, seccomp, and a veth on the bridge.
 */
export class ContainerDriver implements Driver {
  readonly options: ContainerDriverOptions;

  constructor(options: ContainerDriverOptions) {
    this.options = options;
  }

  private dir(sandboxId: string): string {
    return join(this.options.sandboxesDir, sandboxId);
  }

  private crun(...args: string[]): string[] {
    return ['crun', '--root', this.options.crunRoot, ...args];
  }

  private veth(addressIndex: number): string {
    return vethName(this.options.network.config.bridge, addressIndex);
  }

  writableLayer(sandboxId: string): string {
    return join(this.dir(sandboxId), 'upper');
  }

  agentSocket(sandboxId: string): string {
    return join(this.dir(sandboxId), 'run', 'agent.sock');
  }

  async boot(spec: BootSpec): Promise<void> {
    const dir = this.dir(spec.sandboxId);
    const rootfs = join(dir, 'rootfs');
    const upper = join(dir, 'upper');
    const runDir = join(dir, 'run');
    const phases = bootPhases(spec.sandboxId);
    try {
      // Synchronous: a few in-kernel operations on the server's own disk take microseconds, while each trip
      // through libuv's four fs threads waits behind every other sandbox's file work on a busy host.
      for (const d of [upper, join(dir, 'work'), rootfs, runDir]) mkdirSync(d, { recursive: true });
      chownSync(upper, SANDBOX_ID_SHIFT, SANDBOX_ID_SHIFT);
      chownSync(runDir, SANDBOX_ID_SHIFT, SANDBOX_ID_SHIFT);
      const config = buildSandboxSpec({
        sandboxId: spec.sandboxId,
        hostname: spec.sandboxId,
        rootfsDir: rootfs,
        bundleDir: this.options.bundleDir,
        runDir,
        agentTokenKeyHex: spec.agentTokenKeyHex,
        templateEnv: spec.templateEnv,
        startCmd: spec.startCmd ?? null,
        readyCheck: spec.readyCheck ?? null,
        workdir: spec.workdir,
        memoryMiB: spec.resources.memoryMiB,
        vcpu: spec.resources.vcpu,
        background: spec.background ?? false,
        pidsLimit: spec.resources.pidsLimit,
        cgroupsPath: `${this.options.cgroupParent}/${spec.sandboxId}`,
        maxOpenFiles: hostOpenFileLimit(),
      });
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      phases.mark('config');
      await run([
        'mount',
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=${spec.templateRootfs},upperdir=${upper},workdir=${join(dir, 'work')}`,
        rootfs,
      ]);
      phases.mark('mount');
      // The container's mount namespace holds the root once crun has made it: the host mount goes then,
      // alongside the network set-up (independent of it), so the host mount table never grows with sandboxes.
      const unmountRoot = () => run(['umount', '-l', rootfs], { allowFailure: true });
      try {
        // Created and started by one crun process: the agent starts while the network is set up (below).
        // Nothing in the sandbox needs the network before the agent's first answer, which starts the kernel
        // and the template's start command, and the readiness poll that brings it waits for the network.
        // The container's own stdout/stderr (warren-init and the agent) go to agent.log.
        await runLogged(
          this.crun('run', '--detach', '--bundle', dir, '--pid-file', join(dir, 'pid'), spec.sandboxId),
          join(dir, 'agent.log'),
        );
      } catch (err) {
        await unmountRoot();
        throw err;
      }
      const unmounted = unmountRoot();
      try {
        const pid = Number(readFileSync(join(dir, 'pid'), 'utf8').trim());
        phases.mark('crun-run');
        await this.options.network.attach(
          pid,
          this.options.network.address(spec.addressIndex, this.veth(spec.addressIndex)),
          spec.internetAccess,
        );
      } finally {
        await unmounted;
      }
      phases.mark('network');
      await waitForAgent(this.agentSocket(spec.sandboxId), this.options.bootTimeoutMs);
      phases.mark('agent-ready');
    } catch (err) {
      await this.destroy(spec.sandboxId, spec.addressIndex);
      throw err;
    }
  }

  async destroy(sandboxId: string, addressIndex: number): Promise<void> {
    await this.stop(sandboxId, addressIndex);
    await rm(this.dir(sandboxId), { recursive: true, force: true });
  }

  async stop(sandboxId: string, addressIndex: number): Promise<void> {
    const dir = this.dir(sandboxId);
    // Independent: the container (its netns takes eth0 and the host end along) and the egress entry.
    await Promise.all([
      run(this.crun('delete', '--force', sandboxId), { allowFailure: true }),
      this.options.network.detach(this.options.network.address(addressIndex, this.veth(addressIndex))),
    ]);
    // Boot unmounts the root at once; only a boot cut short leaves it mounted.
    if (await isMountPoint(join(dir, 'rootfs')))
      await run(['umount', '-l', join(dir, 'rootfs')], { allowFailure: true });
    await this.killCgroup(sandboxId);
    // crun also makes the sandbox's cgroup in the named systemd hierarchy and the cgroup2 (unified) one; when
    // `crun delete` meets a cgroup still busy with dying tasks it leaves directories behind in any of them.
    for (const controller of [...CGROUP_CONTROLLERS, 'systemd', 'unified']) {
      // A cgroup directory can only be removed with rmdir (crun normally removed it already).
      await rmdir(`/sys/fs/cgroup/${controller}/${this.options.cgroupParent}/${sandboxId}`).catch(() => undefined);
    }
    await rm(join(dir, 'run', 'agent.sock'), { force: true });
  }

  /**
   * Freezes every process of the sandbox through its v1 freezer cgroup and
   * waits until the kernel reports FROZEN — what `crun pause` does, without
   * starting a process (crun reads the same file for the container's state).
   */
  async pause(sandboxId: string): Promise<void> {
    const state = `${this.cgroup('freezer', sandboxId)}/freezer.state`;
    await writeFile(state, 'FROZEN');
    for (let attempt = 0; ; attempt++) {
      const now = (await readFile(state, 'utf8')).trim();
      if (now === 'FROZEN') return;
      if (attempt >= 2000) {
        await writeFile(state, 'THAWED').catch(() => undefined);
        throw new Error(`sandbox ${sandboxId}: freezer stuck in ${now}`);
      }
      // FREEZING: a task is still on its way to the refrigerator; writing FROZEN again retries it.
      await new Promise((r) => setTimeout(r, attempt < 20 ? 0 : 5));
      await writeFile(state, 'FROZEN');
    }
  }

  /** Thaws the sandbox's freezer cgroup (what `crun resume` does). */
  async resume(sandboxId: string): Promise<void> {
    await writeFile(`${this.cgroup('freezer', sandboxId)}/freezer.state`, 'THAWED');
  }

  private cgroup(controller: string, sandboxId: string): string {
    return `/sys/fs/cgroup/${controller}/${this.options.cgroupParent}/${sandboxId}`;
  }

  async setInternetAccess(addressIndex: number, allowed: boolean): Promise<void> {
    const addr = this.options.network.address(addressIndex, this.veth(addressIndex));
    await this.options.network.setEgress(addr.ip, allowed);
  }

  /** Sandbox directories on disk (including stopped sandboxes, which have no container). */
  async directories(): Promise<string[]> {
    return readdir(this.options.sandboxesDir).catch(() => []);
  }

  async setForeground(sandboxId: string, vcpu: number): Promise<void> {
    await this.setCpuShares(sandboxId, 1024 * vcpu);
  }

  async setBackground(sandboxId: string): Promise<void> {
    await this.setCpuShares(sandboxId, BACKGROUND_CPU_SHARES);
  }

  /**
   * Writes the cgroup's `cpu.shares` synchronously: an in-kernel file that
   * answers in microseconds, where an async write costs three round trips
   * through libuv's thread pool on the create path.
   */
  private async setCpuShares(sandboxId: string, shares: number): Promise<void> {
    writeFileSync(`${this.cgroup('cpu', sandboxId)}/cpu.shares`, String(shares));
  }

  async kill(sandboxId: string): Promise<void> {
    await this.killAll(sandboxId, 2_000);
  }

  /**
   * Thaws the sandbox (frozen tasks cannot die) and gives it normal CPU weight
   * (a background-weight sandbox dies slowly on a busy host), SIGKILLs its
   * cgroup, and waits up to `timeoutMs` until the cgroup is empty and every
   * signalled process has finished exiting (a task leaves its cgroup early in
   * its exit). Killing the pid namespace's init takes the rest along within a
   * few milliseconds. The next look comes when the sandbox's cgroup2
   * `cgroup.events` changes (its `populated` flag; crun puts the sandbox in
   * the unified hierarchy too) or after 16 ms; without that file, after a
   * backoff of 1, 2, 4… 16 ms. Cgroup and /proc files are read synchronously: they are in-kernel and
   * answer in microseconds, while a hundred concurrent kills would queue on
   * libuv's 4 fs threads.
   */
  private async killAll(sandboxId: string, timeoutMs: number): Promise<void> {
    await writeFile(`${this.cgroup('freezer', sandboxId)}/freezer.state`, 'THAWED').catch(() => undefined);
    await this.setCpuShares(sandboxId, 1024).catch(() => undefined);
    const deadline = Date.now() + timeoutMs;
    const signalled = new Set<number>();
    // No cgroup2 hierarchy (or no such cgroup): the backoff alone.
    const changes = new ChangeWaiter(`${this.cgroup('unified', sandboxId)}/cgroup.events`);
    try {
      for (let attempt = 0; Date.now() < deadline; attempt++) {
        changes.mark();
        const pids = this.signalCgroup(sandboxId);
        for (const pid of pids) signalled.add(pid);
        if (pids.length === 0 && ![...signalled].some(isAlive)) return;
        // Processes left, with the cgroup watched: its emptying wakes the wait (a change since the look above
        // at once). Out of the cgroup but not yet done exiting: that takes moments.
        await changes.next(pids.length === 0 ? 1 : changes.watching ? 16 : Math.min(16, 2 ** attempt));
      }
    } finally {
      changes.close();
    }
  }

  /** SIGKILL to every process in the sandbox's pids cgroup; returns their pids. */
  private signalCgroup(sandboxId: string): number[] {
    let procs = '';
    try {
      procs = readFileSync(`${this.cgroup('pids', sandboxId)}/cgroup.procs`, 'utf8');
    } catch {
      // no cgroup: nothing runs
    }
    const pids = procs.split('\n').filter(Boolean).map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    return pids;
  }

  /** Kills whatever is in the sandbox's cgroup (see `killAll`); throws when processes are still there after 5 s. */
  private async killCgroup(sandboxId: string): Promise<void> {
    await this.killAll(sandboxId, 5_000);
    if (this.signalCgroup(sandboxId).length > 0) {
      throw new Error(`sandbox ${sandboxId}: processes survive SIGKILL in its cgroup`);
    }
  }

  async list(): Promise<Array<{ sandboxId: string; running: boolean }>> {
    const r = await run(this.crun('list', '--format', 'json'), { allowFailure: true });
    if (r.code !== 0 || r.stdout.trim() === '') return [];
    const items = JSON.parse(r.stdout) as Array<{ id: string; status: string }> | null;
    return (items ?? []).map((c) => ({ sandboxId: c.id, running: c.status === 'running' || c.status === 'paused' }));
  }
}
