import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { SCALES } from '../../bench/context.ts';
import { markdown } from '../../bench/report.ts';
import { runBench } from '../../bench/run.ts';
import { sandboxCgroups } from './leaks.ts';

// The bench's own servers, on names apart from the suite server and from a real bench run.
const slot = Number(process.env.WARREN_TEST_SLOT ?? 0);
const network = {
  bridge: `wbsmoke${slot}`,
  cidr: `172.${20 + slot}.0.0/16`,
  nftTable: `warren_bsmoke${slot}`,
  cgroupParent: `warren-bsmoke${slot}`,
};

function succeeds(argv: string[]): Promise<boolean> {
  return new Promise((ok) => execFile(argv[0]!, argv.slice(1), (err) => ok(!err)));
}

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('bench harness (smoke: N tiny, no timing asserted)', () => {
  it('produces a number for every row of every benchmark and leaves nothing behind', { timeout: 900_000 }, async () => {
    const report = await runBench({ scale: SCALES.smoke!, network, progress: (m) => process.stderr.write(`${m}\n`) });
    expect(report.failures).toEqual([]);
    expect(new Set(report.rows.map((r) => r.section))).toEqual(new Set([1, 2, 3, 4, 5, 6, 7, 8]));
    for (const row of report.rows) {
      expect(row.stats.n, row.name).toBeGreaterThan(0);
      expect(Number.isFinite(row.stats.p50), row.name).toBe(true);
      if (row.floor) expect(Number.isFinite(row.floor.stats.p50), `${row.name} floor`).toBe(true);
    }
    expect(markdown(report)).toContain('| 8 | print → stdout frame');
    expect(await sandboxCgroups(network.cgroupParent)).toEqual([]);
    for (const hierarchy of ['pids', 'memory', 'freezer', 'systemd', 'unified']) {
      expect(await exists(`/sys/fs/cgroup/${hierarchy}/${network.cgroupParent}`), hierarchy).toBe(false);
    }
    expect(await succeeds(['ip', 'link', 'show', network.bridge])).toBe(false);
    expect(await succeeds(['nft', 'list', 'table', 'inet', network.nftTable])).toBe(false);
  });
});
