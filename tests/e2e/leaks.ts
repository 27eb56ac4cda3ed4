import { execFile } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { CGROUP_CONTROLLERS } from '../../packages/server/src/runtime/container/driver.ts';

function sh(argv: string[]): Promise<string> {
  return new Promise((ok) => execFile(argv[0]!, argv.slice(1), (_e, stdout) => ok(String(stdout))));
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Everything on the host that still belongs to a sandbox: crun containers,
 * cgroups, mounts, veths on the bridge, processes, its data directory.
 * An empty list means the sandbox left no trace.
 */
export async function tracesOf(
  sandboxId: string,
  ctx: { dataDir: string; cgroupParent: string; bridge: string },
): Promise<string[]> {
  const traces: string[] = [];
  const crun = await sh(['crun', '--root', `${ctx.dataDir}/crun`, 'list', '--quiet']);
  if (crun.split('\n').includes(sandboxId)) traces.push(`crun container ${sandboxId}`);
  for (const c of CGROUP_CONTROLLERS) {
    const p = `/sys/fs/cgroup/${c}/${ctx.cgroupParent}/${sandboxId}`;
    if (await exists(p)) traces.push(`cgroup ${p}`);
  }
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  for (const line of mounts.split('\n')) if (line.includes(sandboxId)) traces.push(`mount ${line}`);
  const mountinfo = await readFile('/proc/1/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n')) if (line.includes(sandboxId)) traces.push(`host mount ${line}`);
  if (await exists(`${ctx.dataDir}/sandboxes/${sandboxId}`))
    traces.push(`directory ${ctx.dataDir}/sandboxes/${sandboxId}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cg = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
    if (!cg.includes(`/${ctx.cgroupParent}/${sandboxId}`)) continue;
    // A zombie has already exited and holds nothing but its pid until the host's init reaps it
    // (a container's init is reparented to the host's PID 1 once `crun create` exits).
    const state = /^State:\s+(\S)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1];
    if (state !== undefined && state !== 'Z') traces.push(`process ${pid} (state ${state})`);
  }
  return traces;
}

/** Veths currently attached to the test bridge. */
export async function bridgeVeths(bridge: string): Promise<string[]> {
  const out = await sh(['ip', '-o', 'link', 'show', 'master', bridge]);
  return out
    .split('\n')
    .map((l) => /^\d+:\s+([^@:]+)/.exec(l)?.[1])
    .filter((v): v is string => v !== undefined);
}

/** Named network namespaces on the host (Warren creates none; any with the sandbox id is a leak). */
export async function namedNetns(): Promise<string[]> {
  const out = await sh(['ip', 'netns', 'list']);
  return out.split('\n').filter(Boolean);
}

/**
 * Traces left after a teardown that runs in the background (expiry deletes a
 * sandbox's row first, then tears it down): polls until none are left or the
 * deadline passes, and returns what is still there.
 */
export async function tracesAfterTeardown(
  sandboxId: string,
  ctx: { dataDir: string; cgroupParent: string; bridge: string },
  deadlineMs = 10_000,
): Promise<string[]> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const traces = await tracesOf(sandboxId, ctx);
    if (traces.length === 0 || Date.now() > until) return traces;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sandbox cgroups (any process of a sandbox lives in one) under a server's cgroup parent. */
/**
 * Sandbox cgroups under `cgroupParent` in any hierarchy, the named `systemd`
 * and the cgroup2 `unified` ones included (crun can leave those behind).
 * Returns `hierarchy/id` entries.
 */
export async function sandboxCgroupsEverywhere(cgroupParent: string): Promise<string[]> {
  const found: string[] = [];
  for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    const entries = await readdir(`/sys/fs/cgroup/${hierarchy}/${cgroupParent}`).catch(() => [] as string[]);
    for (const e of entries) if (/^sb[a-z0-9]{14}$/.test(e)) found.push(`${hierarchy}/${e}`);
  }
  return found;
}

export async function sandboxCgroups(cgroupParent: string): Promise<string[]> {
  const entries = await readdir(`/sys/fs/cgroup/pids/${cgroupParent}`).catch(() => [] as string[]);
  return entries.filter((e) => /^sb[a-z0-9]{14}$/.test(e));
}
