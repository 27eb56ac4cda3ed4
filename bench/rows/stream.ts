import type { Sandbox } from '@hopx-ai/sdk';
import type { BenchContext } from '../context.ts';
import { hostPrintLatency, wallClockNs } from '../host.ts';
import type { Row } from '../report.ts';
import { summarize } from '../stats.ts';

const GAP_MS = 50;

/**
 * Row 8: time from `print(time.time_ns(), flush=True)` in the sandbox to its
 * stdout frame in `runCodeStream` (sandbox and client share the host clock).
 */
export async function streaming(ctx: BenchContext, sb: Sandbox): Promise<Row[]> {
  const { streamRuns, streamLines } = ctx.scale;
  ctx.progress(`row 8: ${streamRuns} streams × ${streamLines} prints`);
  const code = `import time\nfor i in range(${streamLines}):\n    time.sleep(${GAP_MS / 1000})\n    print(time.time_ns(), flush=True)\n`;
  const samples: number[] = [];
  let errors = 0;
  for (let run = 0; run < streamRuns; run++) {
    let seen = 0;
    try {
      for await (const msg of sb.runCodeStream(code, { timeout: 60 })) {
        if (msg.type !== 'stdout') continue;
        const now = wallClockNs();
        for (const line of msg.data.split('\n')) {
          if (line.trim() === '') continue;
          samples.push(Number(now - BigInt(line.trim())) / 1e6);
          seen++;
        }
      }
      if (seen !== streamLines) throw new Error(`saw ${seen} of ${streamLines} lines`);
    } catch (err) {
      errors++;
      ctx.progress(`  stream failed: ${(err as Error).message}`);
    }
  }
  const floor = await hostPrintLatency(streamRuns * streamLines, GAP_MS);
  return [
    {
      section: 8,
      name: 'print → stdout frame (runCodeStream, python)',
      via: '@hopx-ai/sdk (WebSocket)',
      unit: 'ms',
      stats: summarize(samples),
      errors,
      floor: { name: 'host python3 print → pipe → node', stats: summarize(floor) },
      note: `one print every ${GAP_MS} ms`,
    },
  ];
}
