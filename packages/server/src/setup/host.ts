import { access, mkdir, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { run } from '../internal/exec.ts';

/** Host commands the container runtime and the template builder need (Debian package in brackets). */
export const REQUIRED_COMMANDS: ReadonlyArray<readonly [command: string, debianPackage: string]> = [
  ['crun', 'crun'],
  ['mmdebstrap', 'mmdebstrap'],
  ['nft', 'nftables'],
  ['ip', 'iproute2'],
  ['nsenter', 'util-linux'],
  ['mount', 'mount'],
  ['patchelf', 'patchelf'],
  ['gcc', 'gcc'],
];

async function onPath(command: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    try {
      await access(join(dir, command));
      return true;
    } catch {
      // try the next directory
    }
  }
  return false;
}

/**
 * Checks and prepares the host, idempotently: root, required commands, cgroup
 * v1 controllers, and the hugetlb controller (crun refuses to start while the
 * cgroup2 hierarchy owns it, so it gets a v1 hierarchy of its own).
 * @throws Error saying exactly what is missing.
 */
export async function prepareHost(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('warren server must run as root (it creates namespaces, cgroups and mounts)');
  const missing: string[] = [];
  for (const [command, pkg] of REQUIRED_COMMANDS)
    if (!(await onPath(command))) missing.push(`${command} (Debian package ${pkg})`);
  if (missing.length > 0) throw new Error(`missing host commands: ${missing.join(', ')}; run scripts/setup.sh`);
  for (const controller of ['memory', 'pids', 'cpu', 'freezer']) {
    try {
      await access(`/sys/fs/cgroup/${controller}/cgroup.procs`);
    } catch {
      throw new Error(`cgroup v1 controller '${controller}' is not mounted at /sys/fs/cgroup/${controller}`);
    }
  }
  const unified = await readFile('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').catch(() => '');
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  if (unified.split(/\s+/).includes('hugetlb') && !/ \/sys\/fs\/cgroup\/hugetlb cgroup /.test(mounts)) {
    await mkdir('/sys/fs/cgroup/hugetlb', { recursive: true });
    await run(['mount', '-t', 'cgroup', '-o', 'hugetlb', 'cgroup', '/sys/fs/cgroup/hugetlb']);
  }
}
