import type { Sandbox } from '@hopx-ai/sdk';
import type { BenchContext } from '../context.ts';
import type { Row } from '../report.ts';
import { summarize, timed } from '../stats.ts';

/** Row 7: `pause()` and `resume()` of a running code-interpreter sandbox through the SDK, against bare `crun pause/resume`. */
export async function pauseResume(ctx: BenchContext, sb: Sandbox): Promise<Row[]> {
  const n = ctx.scale.pauseN;
  ctx.progress(`row 7: ${n} pause/resume cycles`);
  const pause: number[] = [];
  const resume: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    try {
      pause.push(await timed(() => sb.pause()));
      resume.push(await timed(() => sb.resume()));
    } catch (err) {
      errors++;
      ctx.progress(`  pause/resume failed: ${(err as Error).message}`);
      await sb.resume().catch(() => undefined);
    }
  }
  const r = await sb.runCode('print(2)');
  if (r.stdout !== '2\n') throw new Error(`sandbox does not run code after resume: ${JSON.stringify(r.stdout)}`);
  const { id } = await ctx.bare.startIdle(ctx.server.rootfs('base'));
  const bp: number[] = [];
  const br: number[] = [];
  for (let i = 0; i < Math.min(n, 50); i++) {
    bp.push(await ctx.bare.pause(id));
    br.push(await ctx.bare.resume(id));
  }
  await ctx.bare.delete(id);
  const ps = summarize(pause);
  const rs = summarize(resume);
  return [
    {
      section: 7,
      name: 'pause (code-interpreter)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: ps,
      errors,
      floor: { name: 'bare `crun pause`', stats: summarize(bp) },
      target: { text: 'p50 ≤ 10 ms', met: ps.p50 <= 10 },
    },
    {
      section: 7,
      name: 'resume (code-interpreter)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: rs,
      errors,
      floor: { name: 'bare `crun resume`', stats: summarize(br) },
      target: { text: 'p50 ≤ 10 ms', met: rs.p50 <= 10 },
    },
  ];
}
