import { chown, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { run, runLogged } from '../../internal/exec.ts';
import { SANDBOX_ID_SHIFT } from '../../templates/builder.ts';
import type { BootSpec, Driver } from '../driver.ts';
import type { HostNetwork } from './network.ts';
import { buildSandboxSpec } from './spec.ts';

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

function hostOpenFileLimit(): Promise<number> {
  return readFile('/proc/self/limits', 'utf8').then((text) => {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(text);
    const hard = m?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m?.[1] ?? 1024);
    return Math.min(hard, 65_536);
  });
}

/** Polls the agent's /health over its unix socket until it answers 200. */
async function waitForAgent(socketPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no answer';
  while (Date.now() < deadline) {
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
    await new Promise((r) => setTimeout(r, 5));
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
    return `wv${addressIndex}`;
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
    try {
      for (const d of [upper, join(dir, 'work'), rootfs, runDir]) await mkdir(d, { recursive: true });
      await chown(upper, SANDBOX_ID_SHIFT, SANDBOX_ID_SHIFT);
      await chown(runDir, SANDBOX_ID_SHIFT, SANDBOX_ID_SHIFT);
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
        pidsLimit: spec.resources.pidsLimit,
        cgroupsPath: `${this.options.cgroupParent}/${spec.sandboxId}`,
        maxOpenFiles: await hostOpenFileLimit(),
      });
      await writeFile(join(dir, 'config.json'), JSON.stringify(config));
      await run([
        'mount',
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=${spec.templateRootfs},upperdir=${upper},workdir=${join(dir, 'work')}`,
        rootfs,
      ]);
      try {
        // The container's own stdout/stderr (warren-init and the agent) go to agent.log.
        await runLogged(
          this.crun('create', '--bundle', dir, '--pid-file', join(dir, 'pid'), spec.sandboxId),
          join(dir, 'agent.log'),
        );
      } finally {
        // The container's mount namespace now holds the root; keep it out of the host mount table.
        await run(['umount', '-l', rootfs], { allowFailure: true });
      }
      const pid = Number((await readFile(join(dir, 'pid'), 'utf8')).trim());
      await this.options.network.attach(
        pid,
        this.options.network.address(spec.addressIndex, this.veth(spec.addressIndex)),
        spec.internetAccess,
      );
      await run(this.crun('start', spec.sandboxId));
      await waitForAgent(this.agentSocket(spec.sandboxId), this.options.bootTimeoutMs);
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
    await run(this.crun('delete', '--force', sandboxId), { allowFailure: true });
    await this.options.network.detach(this.options.network.address(addressIndex, this.veth(addressIndex)));
    await run(['umount', '-l', join(dir, 'rootfs')], { allowFailure: true });
    await this.killCgroup(sandboxId);
    for (const controller of CGROUP_CONTROLLERS) {
      // A cgroup directory can only be removed with rmdir (crun normally removed it already).
      await rmdir(`/sys/fs/cgroup/${controller}/${this.options.cgroupParent}/${sandboxId}`).catch(() => undefined);
    }
    await rm(join(dir, 'run', 'agent.sock'), { force: true });
  }

  async pause(sandboxId: string): Promise<void> {
    await run(this.crun('pause', sandboxId));
  }

  async resume(sandboxId: string): Promise<void> {
    await run(this.crun('resume', sandboxId));
  }

  async setInternetAccess(addressIndex: number, allowed: boolean): Promise<void> {
    const addr = this.options.network.address(addressIndex, this.veth(addressIndex));
    await this.options.network.setEgress(addr.ip, allowed);
  }

  /** Sandbox directories on disk (including stopped sandboxes, which have no container). */
  async directories(): Promise<string[]> {
    return readdir(this.options.sandboxesDir).catch(() => []);
  }

  /**
   * Kills whatever is still in the sandbox's cgroup (thawing it first, since
   * frozen tasks cannot die) and waits until it is empty.
   */
  private async killCgroup(sandboxId: string): Promise<void> {
    const cgroup = (controller: string) => `/sys/fs/cgroup/${controller}/${this.options.cgroupParent}/${sandboxId}`;
    await writeFile(`${cgroup('freezer')}/freezer.state`, 'THAWED').catch(() => undefined);
    for (let attempt = 0; attempt < 250; attempt++) {
      const procs = await readFile(`${cgroup('pids')}/cgroup.procs`, 'utf8').catch(() => '');
      const pids = procs.split('\n').filter(Boolean).map(Number);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`sandbox ${sandboxId}: processes survive SIGKILL in its cgroup`);
  }

  async list(): Promise<Array<{ sandboxId: string; running: boolean }>> {
    const r = await run(this.crun('list', '--format', 'json'), { allowFailure: true });
    if (r.code !== 0 || r.stdout.trim() === '') return [];
    const items = JSON.parse(r.stdout) as Array<{ id: string; status: string }> | null;
    return (items ?? []).map((c) => ({ sandboxId: c.id, running: c.status === 'running' || c.status === 'paused' }));
  }
}
