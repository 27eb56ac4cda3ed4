import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sandbox } from '@hopx-ai/sdk';
import type { BenchContext } from '../context.ts';
import { ddTimes } from '../host.ts';
import type { Row } from '../report.ts';
import { summarize, timed } from '../stats.ts';

const SIZES: Array<{ label: string; bytes: number }> = [
  { label: '1 KiB', bytes: 1024 },
  { label: '1 MiB', bytes: 1024 * 1024 },
  { label: '100 MiB', bytes: 100 * 1024 * 1024 },
];

function mbps(bytes: number, ms: number): string {
  const rate = bytes / 1e6 / (ms / 1000);
  return `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} MB/s`;
}

/**
 * Row 6: `files.upload` (multipart) and `files.download` through the agent,
 * against `dd` of the same size to the same disk (no fsync on either side).
 */
export async function fileTransfer(ctx: BenchContext, sb: Sandbox): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [i, size] of SIZES.entries()) {
    const n = ctx.scale.filesN[i]!;
    ctx.progress(`row 6: ${n} × write/read ${size.label}`);
    const local = join(ctx.workDir, `upload-${size.bytes}.bin`);
    await writeFile(local, Buffer.alloc(size.bytes, 0x61));
    const remote = `/workspace/bench-${size.bytes}.bin`;
    const write: number[] = [];
    const read: number[] = [];
    let writeErrors = 0;
    let readErrors = 0;
    let lastError = '';
    for (let k = 0; k < n; k++) {
      try {
        write.push(await timed(() => sb.files.upload(local, remote)));
      } catch (err) {
        writeErrors++;
        lastError = (err as Error).message;
        continue;
      }
      try {
        read.push(
          await timed(async () => {
            const data = await sb.files.download(remote);
            if (data.length !== size.bytes) throw new Error(`read ${data.length} bytes, wrote ${size.bytes}`);
          }),
        );
      } catch (err) {
        readErrors++;
        lastError = (err as Error).message;
      }
    }
    const ddWrite: number[] = [];
    const ddRead: number[] = [];
    for (let k = 0; k < Math.max(n, 3); k++) {
      const t = await ddTimes(ctx.workDir, size.bytes);
      ddWrite.push(t.writeMs);
      ddRead.push(t.readMs);
    }
    const judged = size.bytes >= 100 * 1024 * 1024;
    for (const [kind, samples, errors, dd] of [
      ['write (files.upload)', write, writeErrors, ddWrite],
      ['read (files.download)', read, readErrors, ddRead],
    ] as const) {
      const stats = summarize(samples);
      const floor = summarize(dd);
      const note = [`${mbps(size.bytes, stats.p50)} vs dd ${mbps(size.bytes, floor.p50)}`];
      if (errors > 0) note.push(`last error: ${lastError.slice(0, 120)}`);
      rows.push({
        section: 6,
        name: `${kind} ${size.label}`,
        via: '@hopx-ai/sdk',
        unit: 'ms',
        stats,
        errors,
        floor: { name: `host \`dd\` ${size.label}, same disk`, stats: floor },
        ...(judged
          ? {
              target: {
                text: '≥ 50 % of dd speed (≤ 2× floor time)',
                met: samples.length > 0 && errors === 0 && stats.p50 <= 2 * floor.p50,
              },
            }
          : {}),
        note: note.join('; '),
      });
    }
  }
  return rows;
}
