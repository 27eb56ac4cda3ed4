import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox } from '@hopx-ai/sdk';
import { agentHealth, createSandbox, deleteSandbox, waitUntil } from '../api.ts';
import type { BenchContext } from '../context.ts';
import { timedSpawn } from '../host.ts';
import type { Row } from '../report.ts';
import { httpAloneCreateSamples } from '../sdk-floor.ts';
import { summarize, timed } from '../stats.ts';

/** `crun run` of /bin/true on a template's root filesystem, `n` times in sequence. */
export async function crunRunFloor(ctx: BenchContext, template: string, n: number): Promise<number[]> {
  const rootfs = ctx.server.rootfs(template);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(await ctx.bare.runTrue(rootfs));
  return samples;
}

/** Times `POST /v1/sandboxes` + agent `/health` through the gateway, `n` times; deletes each (timed too). */
async function createLoop(
  ctx: BenchContext,
  template: string,
  n: number,
  beforeEach: () => Promise<void>,
): Promise<{ create: number[]; del: number[]; gone: number[]; errors: number }> {
  const create: number[] = [];
  const del: number[] = [];
  const gone: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    await beforeEach();
    try {
      let sb: Awaited<ReturnType<typeof createSandbox>> | undefined;
      create.push(
        await timed(async () => {
          sb = await createSandbox(ctx.api, template);
          await agentHealth(ctx.api, sb);
        }),
      );
      // DELETE answers once the sandbox's processes are dead; the teardown finishes with its directory's removal.
      const dir = join(ctx.server.handle.dataDir, 'sandboxes', sb!.id);
      const began = performance.now();
      await deleteSandbox(ctx.api, sb!.id);
      del.push(performance.now() - began);
      while (existsSync(dir)) await new Promise((r) => setTimeout(r, 1));
      gone.push(performance.now() - began);
    } catch (err) {
      errors++;
      ctx.progress(`  create ${template} failed: ${(err as Error).message}`);
    }
    if (i % 10 === 9) ctx.progress(`  ${i + 1}/${n}`);
  }
  return { create, del, gone, errors };
}

/** Waits until the warm pool of `template` holds `size` booted sandboxes. */
export function poolFull(ctx: BenchContext, template: string, size: number): Promise<void> {
  return waitUntil(`warm pool ${template}=${size}`, () => ctx.server.pooled(template) >= size, 180_000);
}

/** Gap between the client-alone creates: at least what a warm create waits for the pool's refill. */
const CLIENT_ALONE_GAP_MS = 100;

/** Row 1, warm: every create claims a pooled sandbox (the bench waits for the pool to refill between creates). */
export async function createWarm(ctx: BenchContext, poolSize: number): Promise<Row[]> {
  const n = ctx.scale.createN;
  ctx.progress(`row 1: ${n} warm creates (base)`);
  const r = await createLoop(ctx, 'base', n, () => poolFull(ctx, 'base', poolSize));
  ctx.progress('floors: bare crun run, the same two requests against a trivial local server');
  const floor = await crunRunFloor(ctx, 'base', Math.min(n, 50));
  const alone = await httpAloneCreateSamples(n, CLIENT_ALONE_GAP_MS);
  const stats = summarize(r.create);
  return [
    {
      section: 1,
      name: 'create → agent /health, warm pool (base)',
      via: 'HTTP',
      unit: 'ms',
      stats,
      errors: r.errors,
      floor: { name: 'bare `crun run true`, same rootfs', stats: summarize(floor) },
      target: { text: 'p50 ≤ 5 ms, p99 ≤ 20 ms', met: stats.p50 <= 5 && stats.p99 <= 20 },
      note: 'pool refilled before each create',
    },
    {
      section: 1,
      name: "the same POST + GET /health against a trivial local server (the client's own cost, no Warren)",
      via: 'HTTP',
      unit: 'ms',
      stats: summarize(alone),
      errors: 0,
      note: `canned answers from a Node HTTP server in the bench process, ${CLIENT_ALONE_GAP_MS} ms apart`,
    },
  ];
}

/** Row 1, cold (pool size 0), and row 7 delete latency from the same sandboxes. */
export async function createCold(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.scale.createN;
  ctx.progress(`row 1: ${n} cold creates (base)`);
  const r = await createLoop(ctx, 'base', n, async () => undefined);
  ctx.progress('floors: bare crun run / delete');
  const floor = await crunRunFloor(ctx, 'base', Math.min(n, 50));
  const delFloor: number[] = [];
  const rootfs = ctx.server.rootfs('base');
  for (let i = 0; i < Math.min(n, 30); i++) {
    const { id } = await ctx.bare.startIdle(rootfs);
    delFloor.push(await ctx.bare.delete(id));
  }
  const stats = summarize(r.create);
  return [
    {
      section: 1,
      name: 'create → agent /health, cold (pool 0, base)',
      via: 'HTTP',
      unit: 'ms',
      stats,
      errors: r.errors,
      floor: { name: 'bare `crun run true`, same rootfs', stats: summarize(floor) },
      target: { text: 'p50 ≤ 80 ms', met: stats.p50 <= 80 },
    },
    {
      section: 7,
      name: 'delete a running sandbox (base)',
      via: 'HTTP',
      unit: 'ms',
      stats: summarize(r.del),
      errors: 0,
      floor: { name: 'bare `crun delete --force` of a running container', stats: summarize(delFloor) },
      note: 'answered once its processes are killed; the rest of the teardown runs after the answer (next row)',
    },
    {
      section: 7,
      name: 'delete → teardown finished (directory removed)',
      via: 'HTTP + host fs',
      unit: 'ms',
      stats: summarize(r.gone),
      errors: 0,
      floor: { name: 'bare `crun delete --force` of a running container', stats: summarize(delFloor) },
    },
  ];
}

/** Row 2: `Sandbox.create` + `runCode("print(1)")` on code-interpreter through the official SDK. */
export async function firstResult(ctx: BenchContext, mode: 'warm' | 'cold', poolSize: number): Promise<Row[]> {
  const n = ctx.scale.firstResultN;
  ctx.progress(`row 2: ${n} ${mode} create + runCode (code-interpreter)`);
  const samples: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    if (mode === 'warm') await poolFull(ctx, 'code-interpreter', poolSize);
    let sb: Sandbox | undefined;
    try {
      samples.push(
        await timed(async () => {
          sb = await Sandbox.create({ template: 'code-interpreter', ...ctx.sdk });
          const result = await sb.runCode('print(1)');
          if (result.stdout !== '1\n') throw new Error(`runCode answered ${JSON.stringify(result.stdout)}`);
        }),
      );
    } catch (err) {
      errors++;
      ctx.progress(`  first result failed: ${(err as Error).message}`);
    }
    await sb?.kill().catch(() => undefined);
  }
  const floor: number[] = [];
  for (let i = 0; i < Math.max(n, 20); i++) floor.push(await timedSpawn(['python3', '-c', 'print(1)']));
  const stats = summarize(samples);
  return [
    {
      section: 2,
      name: `first python result, ${mode === 'warm' ? 'warm pool' : 'cold (pool 0)'} (code-interpreter)`,
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats,
      errors,
      floor: { name: "host `python3 -c 'print(1)'`", stats: summarize(floor) },
      ...(mode === 'warm' ? { target: { text: 'p50 ≤ 25 ms', met: stats.p50 <= 25 } } : {}),
    },
  ];
}
