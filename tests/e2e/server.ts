import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CGROUP_CONTROLLERS } from '../../packages/server/src/runtime/container/driver.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

export interface TestNetwork {
  bridge: string;
  cidr: string;
  nftTable: string;
  cgroupParent: string;
}

/** A network/cgroup namespace of names of its own for test server number `n`, apart from a real install. */
export function testNetwork(n: number): TestNetwork {
  return {
    bridge: `wtest${n}`,
    cidr: `10.${150 + n}.0.0/16`,
    nftTable: `warren_test${n}`,
    cgroupParent: `warren-test${n}`,
  };
}

export interface ServerHandle {
  child: ChildProcess;
  baseURL: string;
  apiKey: string;
  dataDir: string;
  net: TestNetwork;
  output: () => string;
}

/** Starts `packages/server/src/main.ts` as a real process on 127.0.0.1 with an ephemeral port. */
export async function startServer(
  options: TestNetwork & { dataDir: string; apiKey?: string; env?: Record<string, string> },
): Promise<ServerHandle> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    WARREN_HOST: '127.0.0.1',
    WARREN_PORT: '0',
    WARREN_DATA_DIR: options.dataDir,
    WARREN_BRIDGE: options.bridge,
    WARREN_BRIDGE_CIDR: options.cidr,
    WARREN_NFT_TABLE: options.nftTable,
    WARREN_CGROUP_PARENT: options.cgroupParent,
    ...(options.apiKey ? { WARREN_API_KEY: options.apiKey } : {}),
    // Warm-pool sandboxes are never listed, so only the server can remove them when a test server stops.
    WARREN_STOP_SANDBOXES_ON_EXIT: 'true',
    // Tests never reach a public registry: short image names go straight to Warren's Debian-built equivalents.
    WARREN_IMAGE_DEFAULT_REGISTRY: 'none',
    ...options.env,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'packages/server/src/main.ts'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
    process.stderr.write(b);
  });
  const { baseURL, apiKey } = await new Promise<{ baseURL: string; apiKey: string }>((ok, fail) => {
    let stdout = '';
    const onExit = (code: number | null) => fail(new Error(`server exited (${code}) before listening:\n${out}`));
    child.once('exit', onExit);
    child.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString();
      out += b.toString();
      const url = /listening on (http:\/\/\S+)/.exec(stdout)?.[1];
      const printed = /API key \(shown once[^)]*\): (\S+)/.exec(stdout)?.[1];
      const key = options.apiKey ?? printed;
      if (url && key) {
        child.off('exit', onExit);
        ok({ baseURL: url, apiKey: key });
      }
    });
  });
  return { child, baseURL, apiKey, dataDir: options.dataDir, net: options, output: () => out };
}

/** Stops a test server; optionally deletes every sandbox it still has first. */
export async function stopServer(handle: ServerHandle, options: { deleteSandboxes: boolean }): Promise<void> {
  if (options.deleteSandboxes && handle.child.exitCode === null) {
    const headers = { 'x-api-key': handle.apiKey };
    for (;;) {
      const res = await fetch(`${handle.baseURL}/v1/sandboxes?limit=1000`, { headers });
      const body = (await res.json()) as { data: Array<{ id: string }> };
      if (body.data.length === 0) break;
      await Promise.all(
        body.data.map((s) => fetch(`${handle.baseURL}/v1/sandboxes/${s.id}`, { method: 'DELETE', headers })),
      );
    }
  }
  if (handle.child.exitCode === null) {
    const exited = new Promise((ok) => handle.child.once('exit', ok));
    handle.child.kill('SIGTERM');
    await exited;
  }
}

/** Removes the bridge, nftables tables and parent cgroups a test server created. */
export async function removeTestNetwork(net: TestNetwork): Promise<void> {
  const { execFile } = await import('node:child_process');
  const { rmdir } = await import('node:fs/promises');
  const run = (argv: string[]) =>
    new Promise<void>((ok) => {
      execFile(argv[0]!, argv.slice(1), () => ok());
    });
  await run(['ip', 'link', 'delete', net.bridge]);
  await run(['nft', 'delete', 'table', 'inet', net.nftTable]);
  await run(['nft', 'delete', 'table', 'ip', `${net.nftTable}_nat`]);
  // crun also creates the named systemd hierarchy's and the cgroup2 (unified) parents.
  for (const c of [...CGROUP_CONTROLLERS, 'systemd', 'unified']) {
    await rmdir(`/sys/fs/cgroup/${c}/${net.cgroupParent}`).catch(() => undefined);
  }
}
