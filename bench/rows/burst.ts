import { Sandbox } from '@hopx-ai/sdk';
import type { BenchContext } from '../context.ts';
import type { Row } from '../report.ts';
import { msSince, summarize, timed } from '../stats.ts';
import { poolFull } from './create.ts';

/**
 * Row 4: `k` concurrent `Sandbox.create(base) → runCode("print(1)") → kill`
 * through the SDK, starting with a full warm pool of `poolSize`; against `k`
 * concurrent bare `crun run true`.
 */
export async function bursts(ctx: BenchContext, poolSize: number): Promise<Row[]> {
  const rows: Row[] = [];
  const rootfs = ctx.server.rootfs('base');
  for (const k of ctx.scale.bursts) {
    await poolFull(ctx, 'base', Math.min(k, poolSize));
    ctx.progress(`row 4: burst of ${k} create → runCode → kill`);
    const perOp: number[] = [];
    const errors: string[] = [];
    const start = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: k }, async () => {
        let sb: Sandbox | undefined;
        try {
          perOp.push(
            await timed(async () => {
              sb = await Sandbox.create({ template: 'base', ...ctx.sdk });
              const r = await sb.runCode('print(1)');
              if (r.stdout !== '1\n') throw new Error(`runCode answered ${JSON.stringify(r.stdout)}`);
              await sb.kill();
              sb = undefined;
            }),
          );
        } catch (err) {
          errors.push((err as Error).message);
          await sb?.kill().catch(() => undefined);
        }
      }),
    );
    const wall = msSince(start);
    const floorOps: number[] = [];
    const floorStart = process.hrtime.bigint();
    await Promise.all(Array.from({ length: k }, async () => floorOps.push(await ctx.bare.runTrue(rootfs))));
    const floorWall = msSince(floorStart);
    const error = errors.length > 0 ? `; first error: ${errors[0]!.slice(0, 120)}` : '';
    rows.push(
      {
        section: 4,
        name: `burst ${k}: per create → runCode → kill (base)`,
        via: '@hopx-ai/sdk',
        unit: 'ms',
        stats: summarize(perOp),
        errors: errors.length,
        floor: { name: `${k} concurrent bare \`crun run true\`, each`, stats: summarize(floorOps) },
        note: `warm pool ${poolSize} base, full at start${error}`,
      },
      {
        section: 4,
        name: `burst ${k}: wall time of all ${k}`,
        via: '@hopx-ai/sdk',
        unit: 'ms',
        stats: summarize([wall]),
        errors: errors.length,
        floor: { name: `${k} concurrent bare \`crun run true\`, all`, stats: summarize([floorWall]) },
        ...(k === 100 ? { target: { text: '≤ 3 s, 0 errors', met: wall <= 3000 && errors.length === 0 } } : {}),
      },
    );
  }
  return rows;
}
