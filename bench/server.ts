import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type { TestNetwork };

import {
  removeTestNetwork,
  type ServerHandle,
  startServer,
  stopServer,
  type TestNetwork,
} from '../tests/e2e/server.ts';

/**
 * Names of the bench server's own bridge, network, nft table and cgroup parent, apart from any install or test.
 * `WARREN_BENCH_SLOT=n` (1–9) gives each of several benches run at once on one machine its own set.
 */
export const BENCH_NETWORK: TestNetwork = benchNetwork(Number(process.env.WARREN_BENCH_SLOT ?? 0));

function benchNetwork(slot: number): TestNetwork {
  if (!Number.isInteger(slot) || slot < 0 || slot > 9) throw new Error(`WARREN_BENCH_SLOT must be 0-9, got ${slot}`);
  const suffix = slot === 0 ? '' : String(slot);
  return {
    bridge: `wbench${suffix}`,
    cidr: `10.${240 + slot}.0.0/16`,
    nftTable: `warren_bench${suffix}`,
    cgroupParent: `warren-bench${suffix}`,
  };
}

export const BENCH_API_KEY = 'wrn_bench_key_0123456789abcdef';

/** A running bench server plus read-only views of its state the HTTP API does not expose. */
export interface BenchServer {
  handle: ServerHandle;
  net: TestNetwork;
  baseURL: string;
  apiKey: string;
  /** Pooled (booted, unclaimed) sandboxes of a template, read from the server's database (read-only). */
  pooled(templateName: string): number;
  /** Root filesystem directory of a built template. */
  rootfs(templateName: string): string;
  /** Sandbox cgroups currently under the bench cgroup parent (pids hierarchy). */
  liveCgroups(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Starts `packages/server/src/main.ts` on 127.0.0.1 with the bench network
 * names, a data directory of its own and `WARREN_STOP_SANDBOXES_ON_EXIT=true`.
 */
export async function startBenchServer(options: {
  dataDir: string;
  pool: string;
  net: TestNetwork;
}): Promise<BenchServer> {
  const handle = await startServer({
    dataDir: options.dataDir,
    ...options.net,
    apiKey: BENCH_API_KEY,
    env: {
      WARREN_POOL: options.pool,
      WARREN_MAX_SANDBOXES_PER_KEY: '1000',
      WARREN_TEMPLATES: 'base,code-interpreter',
    },
  });
  const db = new Database(join(options.dataDir, 'warren.db'), { readonly: true, fileMustExist: true });
  const pooledQuery = db.prepare(
    "SELECT COUNT(*) AS n FROM sandboxes s JOIN templates t ON t.id = s.template_id WHERE t.name = ? AND s.status = 'pooled'",
  );
  const rootfsQuery = db.prepare('SELECT rootfs_dir AS dir FROM templates WHERE name = ?');
  return {
    handle,
    net: options.net,
    baseURL: handle.baseURL,
    apiKey: handle.apiKey,
    pooled: (name) => (pooledQuery.get(name) as { n: number }).n,
    rootfs: (name) => {
      const dir = (rootfsQuery.get(name) as { dir: string | null } | undefined)?.dir;
      if (!dir) throw new Error(`template ${name} has no root filesystem`);
      return dir;
    },
    liveCgroups: async () =>
      (await readdir(`/sys/fs/cgroup/pids/${options.net.cgroupParent}`, { withFileTypes: true }).catch(() => []))
        .filter((d) => d.isDirectory())
        .map((d) => d.name),
    stop: async () => {
      db.close();
      await stopServer(handle, { deleteSandboxes: true });
    },
  };
}

/** Removes the bench bridge, nft tables and parent cgroups (after the server stopped). */
export async function removeBenchNetwork(net: TestNetwork): Promise<void> {
  await removeTestNetwork(net);
}
