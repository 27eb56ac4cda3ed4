import { mkdtemp, rm } from 'node:fs/promises';
import { Sandbox } from '@hopx-ai/sdk';
import { type Created, createSandbox, deleteSandbox } from './api.ts';
import type { BenchContext, Scale } from './context.ts';
import { BareContainers } from './host.ts';
import { loadNow, machineInfo } from './machine.ts';
import type { Report, Row } from './report.ts';
import { bursts } from './rows/burst.ts';
import { createCold, createWarm, firstResult, poolFull } from './rows/create.ts';
import { density } from './rows/density.ts';
import { execRoundTrip } from './rows/exec.ts';
import { fileTransfer } from './rows/files.ts';
import { pauseResume } from './rows/lifecycle.ts';
import { streaming } from './rows/stream.ts';
import { BENCH_NETWORK, type BenchServer, removeBenchNetwork, startBenchServer, type TestNetwork } from './server.ts';

export interface BenchOptions {
  scale: Scale;
  /** Issue row numbers to run (all when absent). */
  only?: ReadonlySet<number>;
  /** Bridge, cidr, nft table and cgroup parent of the bench servers. @default BENCH_NETWORK */
  network?: TestNetwork;
  progress: (message: string) => void;
}

/** Runs the whole bench; returns the report. Always stops its servers and removes its host state. */
export async function runBench(options: BenchOptions): Promise<Report> {
  const { scale, progress } = options;
  const net = options.network ?? BENCH_NETWORK;
  const wanted = (section: number) => options.only === undefined || options.only.has(section);
  const workDir = await mkdtemp('/var/tmp/warren-bench-');
  const bare = new BareContainers({ workDir, cgroupParent: net.cgroupParent });
  const rows: Row[] = [];
  const failures: Report['failures'] = [];
  const dataDirs: string[] = [];
  const startedAt = new Date().toISOString();
  const machine = await machineInfo('/var/tmp');
  let server: BenchServer | undefined;

  const section = async (n: number, name: string, fn: () => Promise<Row[]>) => {
    if (!wanted(n)) return;
    try {
      rows.push(...(await fn()));
    } catch (err) {
      progress(`row ${n} (${name}) failed: ${(err as Error).stack ?? String(err)}`);
      failures.push({ section: n, name, error: (err as Error).message });
    }
  };
  const boot = async (label: string, pool: string) => {
    progress(`starting a ${label} server (WARREN_POOL=${pool}; first start builds templates, minutes)`);
    // Not inside workDir (0700): the sandbox's uid must be able to reach its directory.
    const dataDir = await mkdtemp('/var/tmp/warren-bench-data-');
    dataDirs.push(dataDir);
    server = await startBenchServer({ dataDir, pool, net });
    progress(`server up at ${server.baseURL}`);
    return server;
  };
  const stop = async () => {
    if (!server) return;
    progress('stopping the server (deletes its sandboxes)');
    await server.stop();
    server = undefined;
  };
  let cleaning: Promise<void> | undefined;
  /** Stops the server (it deletes its sandboxes), bare containers, the bench network and every directory; once. */
  const cleanup = () => {
    cleaning ??= (async () => {
      await stop().catch((err: unknown) => progress(`stopping the server failed: ${(err as Error).message}`));
      await bare.cleanup();
      await removeBenchNetwork(net);
      await rm(workDir, { recursive: true, force: true });
      for (const d of dataDirs) await rm(d, { recursive: true, force: true });
    })();
    return cleaning;
  };
  // Interrupted: clean up before exiting, so no sandbox, bridge, cgroup or nft table is left behind.
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    // Warm server: a base pool as large as the largest burst (1 without bursts), one code-interpreter.
    const basePool = wanted(4) ? Math.max(1, ...scale.bursts) : 1;
    if ([1, 2, 3, 4, 6, 7, 8].some(wanted)) {
      try {
        await warmRows(basePool);
      } catch (err) {
        // The warm server itself failed (start, pool): its rows are missing; the cold rows still run.
        progress(`warm-pool rows failed: ${(err as Error).stack ?? String(err)}`);
        failures.push({ section: 0, name: 'warm-pool server', error: (err as Error).message });
        await stop().catch(() => undefined);
      }
    }

    if ([1, 2, 5, 7].some(wanted)) {
      const cold = await boot('cold (no pool)', '0');
      const coldCtx = context(cold);
      // Row 7's delete latency comes from row 1's cold sandboxes.
      await section(wanted(1) ? 1 : 7, 'create, cold', () => createCold(coldCtx));
      await section(2, 'first result, cold', () => firstResult(coldCtx, 'cold', 0));
      await section(5, 'density', () => density(coldCtx));
      await stop();
    }
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  machine['load average at end (1/5/15 min)'] = loadNow();
  rows.sort((a, b) => a.section - b.section);
  return { startedAt, finishedAt: new Date().toISOString(), scale: scale.name, machine, rows, failures };

  function context(s: BenchServer): BenchContext {
    return {
      server: s,
      api: { baseURL: s.baseURL, apiKey: s.apiKey },
      sdk: { baseURL: s.baseURL, apiKey: s.apiKey },
      bare,
      scale,
      workDir,
      progress,
    };
  }

  /** Rows 1–4 and 6–8 on a server with a warm pool. */
  async function warmRows(basePool: number): Promise<void> {
    const warm = await boot('warm-pool', `base=${basePool},code-interpreter=1`);
    const ctx = context(warm);
    progress(`waiting for the warm pool (${basePool} base, 1 code-interpreter)`);
    await poolFull(ctx, 'base', basePool);
    await poolFull(ctx, 'code-interpreter', 1);
    await section(1, 'create, warm', () => createWarm(ctx, basePool));
    await section(2, 'first result, warm', () => firstResult(ctx, 'warm', 1));

    if ([3, 6, 7, 8].some(wanted)) {
      await poolFull(ctx, 'code-interpreter', 1);
      const sb = await Sandbox.create({ template: 'code-interpreter', ...ctx.sdk });
      let raw: Created | undefined;
      try {
        raw = await createSandbox(ctx.api, 'code-interpreter');
        // The two claims start pool refills (a code-interpreter boot starts a Python kernel: seconds of CPU);
        // rows 3 and 6–8 measure a warm sandbox at rest, not one competing with those boots.
        await poolFull(ctx, 'code-interpreter', 1);
        await poolFull(ctx, 'base', basePool);
        await section(3, 'execution round trip', () => execRoundTrip(ctx, sb, raw!));
        await section(8, 'streaming', () => streaming(ctx, sb));
        await section(6, 'files', () => fileTransfer(ctx, sb));
        await section(7, 'pause/resume', () => pauseResume(ctx, sb));
      } finally {
        await sb.kill().catch(() => undefined);
        if (raw) await deleteSandbox(ctx.api, raw.id).catch(() => undefined);
      }
    }
    await section(4, 'burst', () => bursts(ctx, basePool));
    await stop();
  }
}
