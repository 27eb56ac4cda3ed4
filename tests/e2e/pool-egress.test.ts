import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, inject, it } from 'vitest';
import { type CreatedSandbox, createSandbox, deleteSandbox, py } from './client.ts';
import { testNetwork } from './server.ts';

const ctx = inject('warren');
const nftTable = testNetwork(Number(process.env.WARREN_TEST_SLOT ?? 0)).nftTable;

function egressSet(): Promise<string> {
  return new Promise((ok, fail) =>
    execFile('nft', ['list', 'set', 'inet', nftTable, 'egress'], (err, stdout) => (err ? fail(err) : ok(stdout))),
  );
}

/** An address as a whole element of the set listing (so 10.1.0.1 does not match 10.1.0.12). */
function element(ip: string): RegExp {
  return new RegExp(`[\\s{,]${ip.replace(/\./g, '\\.')}[\\s},]`);
}

/** The sandbox's own address, found without sending anything (a UDP socket's connect only picks a route). */
async function addressOf(sb: CreatedSandbox): Promise<string> {
  const r = await py(
    sb,
    `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.connect(("${ctx.gateway}", 9))\nprint(s.getsockname()[0])`,
  );
  return r.stdout.trim();
}

/** Ids of the pooled (booted, unclaimed) base sandboxes. */
function pooledBase(): string[] {
  const db = new Database(join(ctx.dataDir, 'warren.db'), { readonly: true });
  try {
    return (
      db
        .prepare(
          "SELECT s.id FROM sandboxes s JOIN templates t ON t.id = s.template_id WHERE t.name = 'base' AND s.status = 'pooled'",
        )
        .all() as Array<{ id: string }>
    ).map((r) => r.id);
  } finally {
    db.close();
  }
}

function cpuShares(id: string): Promise<string> {
  return readFile(`/sys/fs/cgroup/cpu/${ctx.cgroupParent}/${id}/cpu.shares`, 'utf8').then((s) => s.trim());
}

async function poolFull(): Promise<void> {
  const db = new Database(join(ctx.dataDir, 'warren.db'), { readonly: true });
  try {
    for (let i = 0; i < 600; i++) {
      const n = db
        .prepare(
          "SELECT COUNT(*) AS n FROM sandboxes s JOIN templates t ON t.id = s.template_id WHERE t.name = 'base' AND s.status = 'pooled'",
        )
        .get() as { n: number };
      if (n.n >= 2) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    db.close();
  }
  throw new Error('the base pool did not fill');
}

describe('warm-pool CPU weight', () => {
  it('pooled sandboxes boot at the lowest CPU weight; a claimed one gets its normal weight', async () => {
    await poolFull();
    const pooled = pooledBase();
    expect(pooled.length).toBeGreaterThanOrEqual(2);
    for (const id of pooled) expect(await cpuShares(id)).toBe('2');
    const sb = await createSandbox({ template_name: 'base' });
    try {
      expect(pooled).toContain(sb.id);
      expect(await cpuShares(sb.id)).toBe('1024'); // base: 1 vcpu
    } finally {
      await deleteSandbox(sb);
    }
  });
});

describe('warm-pool egress', () => {
  it('a claimed sandbox has egress exactly when it asked for internet access', async () => {
    await poolFull();
    // Both come from the pool (it holds two booted base sandboxes); one asks for no internet access.
    const [online, offline] = await Promise.all([
      createSandbox({ template_name: 'base' }),
      createSandbox({ template_name: 'base', internet_access: false }),
    ]);
    try {
      const set = await egressSet();
      const onlineIP = await addressOf(online);
      const offlineIP = await addressOf(offline);
      expect(onlineIP).toMatch(/^10\.\d+\.\d+\.\d+$/);
      expect(offlineIP).toMatch(/^10\.\d+\.\d+\.\d+$/);
      expect(set).toMatch(element(onlineIP));
      expect(set).not.toMatch(element(offlineIP));
    } finally {
      await Promise.all([deleteSandbox(online), deleteSandbox(offline)]);
    }
  });
});
