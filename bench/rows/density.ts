import { agentHealth, agentJSON, type Created, createSandbox, deleteSandbox, eachLimited } from '../api.ts';
import type { BenchContext } from '../context.ts';
import { cgroupMemoryBytes, cgroupPssBytes, meminfo } from '../host.ts';
import type { Row } from '../report.ts';
import { summarize, timed } from '../stats.ts';
import { crunRunFloor } from './create.ts';

const MiB = 1024 * 1024;
/** Never let the machine's used memory pass this share of MemTotal. */
const MEMORY_CEILING = 0.8;
/** Creates in flight while filling up between the timed windows. */
const FILL_CONCURRENCY = 4;

function pick<T>(items: readonly T[], k: number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, k);
}

/**
 * Row 5: creates idle base sandboxes (cold, pool 0) up to `densityMax` or
 * until the next one would take the machine past 80 % of its memory; memory
 * per idle sandbox three ways, create latency at 10/100/top, and `/execute`
 * on 10 random live sandboxes.
 */
export async function density(ctx: BenchContext): Promise<Row[]> {
  const max = ctx.scale.densityMax;
  ctx.progress(`row 5: up to ${max} idle base sandboxes (stops before 80 % of RAM)`);
  const live: Created[] = [];
  /** Sequential timed creates made with `from` … `from + n - 1` sandboxes already live. */
  const windows: Array<{ from: number; samples: number[] }> = [];
  let errors = 0;
  let stopReason = `reached ${max}`;
  let stopped = false;
  const start = await meminfo();

  /** Whether one more sandbox fits under the ceiling (estimating its size from those made so far). */
  const roomForOne = async (inFlight: number) => {
    const now = await meminfo();
    const perSandbox = live.length >= 5 ? (start.availableBytes - now.availableBytes) / live.length : 100 * MiB;
    return now.totalBytes - now.availableBytes + perSandbox * (1 + inFlight) <= MEMORY_CEILING * now.totalBytes;
  };
  /** Creates one sandbox; returns its create → /health time, or undefined when it failed. */
  const createOne = async (): Promise<number | undefined> => {
    try {
      let sb: Created | undefined;
      const ms = await timed(async () => {
        sb = await createSandbox(ctx.api, 'base');
        live.push(sb);
        await agentHealth(ctx.api, sb);
      });
      if (live.length % 25 === 0) {
        const m = await meminfo();
        ctx.progress(
          `  ${live.length} live, MemAvailable ${(m.availableBytes / MiB).toFixed(0)} of ${(m.totalBytes / MiB).toFixed(0)} MiB`,
        );
      }
      return ms;
    } catch (err) {
      errors++;
      ctx.progress(`  create failed at ${live.length} live: ${(err as Error).message}`);
      if (errors > 5) {
        stopReason = 'stopped early: creates failing';
        stopped = true;
      }
      return undefined;
    }
  };
  /** Fills up to `target` live sandboxes, a few creates at a time (not timed), keeping room for `reserve` more. */
  const fillTo = async (target: number, reserve: number) => {
    let inFlight = 0;
    await Promise.all(
      Array.from({ length: FILL_CONCURRENCY }, async () => {
        while (!stopped && live.length + inFlight < target) {
          if (!(await roomForOne(inFlight + reserve))) {
            stopReason = 'stopped early: more would pass 80 % of RAM';
            stopped = true;
            return;
          }
          inFlight++;
          await createOne();
          inFlight--;
        }
      }),
    );
  };
  /** `n` sequential timed creates (the sandboxes stay live). */
  const timedCreates = async (n: number) => {
    const window = { from: live.length, samples: [] as number[] };
    for (let k = 0; k < n && errors <= 5; k++) {
      if (!(await roomForOne(0))) {
        stopReason = 'stopped early: more would pass 80 % of RAM';
        stopped = true;
        break;
      }
      const ms = await createOne();
      if (ms !== undefined) window.samples.push(ms);
    }
    if (window.samples.length > 0) windows.push(window);
  };

  try {
    const probes = ctx.scale.densityProbes;
    for (const level of [10, 100]) {
      if (level + probes > max - probes) continue;
      await fillTo(level, probes);
      if (stopped) break;
      await timedCreates(probes);
    }
    // The last window is timed even when memory ended the fill early (the fill kept room for it).
    await fillTo(max - probes, probes);
    await timedCreates(probes);
    // Let boot-time allocations settle before measuring idle memory.
    await new Promise((r) => setTimeout(r, 3000));
    const after = await meminfo();
    const drop = (start.availableBytes - after.availableBytes) / MiB / Math.max(1, live.length);
    const ids = live.map((s) => s.id);
    const cg: number[] = [];
    for (const id of ids) {
      const bytes = await cgroupMemoryBytes(`${ctx.server.net.cgroupParent}/${id}`).catch(() => Number.NaN);
      if (Number.isFinite(bytes)) cg.push(bytes / MiB);
    }
    const pss: number[] = [];
    const rss: number[] = [];
    for (const id of pick(ids, 20)) {
      const p = await cgroupPssBytes(`${ctx.server.net.cgroupParent}/${id}`).catch(() => undefined);
      if (p) {
        pss.push(p.pssBytes / MiB);
        rss.push(p.rssBytes / MiB);
      }
    }
    ctx.progress('  runCode on 10 random live sandboxes');
    const probe: number[] = [];
    let probeErrors = 0;
    for (const sb of pick(live, 10)) {
      try {
        probe.push(
          await timed(async () => {
            const r = (await agentJSON(ctx.api, sb, 'POST', '/execute', { code: 'print(1)', language: 'python' })) as {
              stdout: string;
            };
            if (r.stdout !== '1\n') throw new Error(`answered ${JSON.stringify(r.stdout)}`);
          }),
        );
      } catch (err) {
        probeErrors++;
        ctx.progress(`  probe failed: ${(err as Error).message}`);
      }
    }

    ctx.progress('floors: idle bare containers, crun run');
    const rootfs = ctx.server.rootfs('base');
    const bareBefore = await meminfo();
    const bare: Array<{ id: string; cgroup: string }> = [];
    for (let i = 0; i < 10; i++) bare.push(await ctx.bare.startIdle(rootfs));
    await new Promise((r) => setTimeout(r, 1000));
    const bareAfter = await meminfo();
    const bareCg: number[] = [];
    for (const b of bare) bareCg.push((await cgroupMemoryBytes(b.cgroup)) / MiB);
    const bareDrop = (bareBefore.availableBytes - bareAfter.availableBytes) / MiB / bare.length;
    for (const b of bare) await ctx.bare.delete(b.id);
    const runFloor = summarize(await crunRunFloor(ctx, 'base', 20));

    const top = live.length;
    const target = {
      text: '500 idle live at once, each answering',
      met: top >= 500 && probeErrors === 0 && probe.length === 10,
    };
    const rows: Row[] = [
      {
        section: 5,
        name: 'memory per idle sandbox: drop in MemAvailable ÷ live',
        via: 'host /proc/meminfo',
        unit: 'MiB',
        stats: summarize([drop]),
        errors,
        floor: { name: 'idle bare container (sleep)', stats: summarize([bareDrop]) },
        note: `${top} live (${stopReason}); includes kernel memory (netns, veth, page tables, slab) and page cache`,
      },
      {
        section: 5,
        name: 'memory per idle sandbox: cgroup memory.usage_in_bytes',
        via: 'host cgroup v1',
        unit: 'MiB',
        stats: summarize(cg),
        errors: 0,
        floor: { name: 'idle bare container (sleep)', stats: summarize(bareCg) },
        note: 'RSS + page cache + kernel memory charged to the sandbox cgroup',
      },
      {
        section: 5,
        name: 'memory per idle sandbox: PSS (smaps_rollup) of its processes',
        via: 'host /proc',
        unit: 'MiB',
        stats: summarize(pss),
        errors: 0,
        note: `20 random sandboxes; RSS p50 ${summarize(rss).p50.toFixed(1)} MiB (shared pages counted whole)`,
      },
    ];
    // Create latency with about 10, 100 and the most sandboxes live: sequential creates, nothing else creating.
    for (const w of windows) {
      rows.push({
        section: 5,
        name: `create (cold, base) with ${w.from}–${w.from + w.samples.length - 1} live`,
        via: 'HTTP',
        unit: 'ms',
        stats: summarize(w.samples),
        errors: 0,
        floor: { name: 'bare `crun run true`, same rootfs', stats: runFloor },
      });
    }
    rows.push({
      section: 5,
      name: `/execute print(1) on 10 random of ${top} live`,
      via: 'HTTP',
      unit: 'ms',
      stats: summarize(probe),
      errors: probeErrors,
      target,
    });
    return rows;
  } finally {
    ctx.progress(`  deleting ${live.length} sandboxes`);
    let done = 0;
    await eachLimited(live, 8, async (sb) => {
      await deleteSandbox(ctx.api, sb.id).catch((err: unknown) =>
        ctx.progress(`  delete ${sb.id} failed: ${(err as Error).message}`),
      );
      if (++done % 50 === 0) ctx.progress(`  deleted ${done}/${live.length}`);
    });
  }
}
