import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sandbox } from '@hopx-ai/sdk';
import { Sandbox as WarrenSandbox } from '@warren/sdk';
import type { BenchContext } from '../context.ts';
import { ddTimes } from '../host.ts';
import type { Row } from '../report.ts';
import { type Summary, summarize, timed } from '../stats.ts';

const SIZES: Array<{ label: string; bytes: number }> = [
  { label: '1 KiB', bytes: 1024 },
  { label: '1 MiB', bytes: 1024 * 1024 },
  { label: '100 MiB', bytes: 100 * 1024 * 1024 },
];

/** Sizes judged against the target (≥ 50 % of `dd`). */
const JUDGED_BYTES = 100 * 1024 * 1024;

/** One SDK's way of moving a file both ways. */
interface Client {
  via: string;
  /** What the read row does with the bytes. */
  readName: string;
  upload(local: string, remote: string): Promise<unknown>;
  /** Downloads `remote` (the `k`-th time); resolves the number of bytes received. */
  download(remote: string, k: number): Promise<number>;
  /** Removes what the downloads left on the host (not timed). */
  cleanup(): Promise<void>;
}

function mbps(bytes: number, ms: number): string {
  const rate = bytes / 1e6 / (ms / 1000);
  return `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(2)} MB/s`;
}

function clients(sb: Sandbox, warren: WarrenSandbox, downloads: string): Client[] {
  return [
    {
      via: '@hopx-ai/sdk',
      readName: 'read (files.download)',
      upload: (local, remote) => sb.files.upload(local, remote),
      download: async (remote) => (await sb.files.download(remote)).length,
      cleanup: async () => undefined,
    },
    {
      via: '@warren/sdk',
      readName: 'read (files.download to a file)',
      upload: (local, remote) => warren.files.upload(local, remote),
      // A new file each time, removed after the timed loop: freeing the last one's pages is not the transfer.
      download: (remote, k) => warren.files.download(remote, join(downloads, `${k}.bin`)),
      cleanup: async () => {
        await rm(downloads, { recursive: true, force: true });
        await mkdir(downloads, { recursive: true });
      },
    },
  ];
}

/**
 * Row 6: upload (multipart) and download through the agent with both SDKs,
 * against `dd` of the same size to the same disk through the page cache (no
 * fsync on either side). For the judged size, the disk's own speed (`dd` with
 * `fdatasync`, and `O_DIRECT` reads) is measured too and given in the note.
 */
export async function fileTransfer(ctx: BenchContext, sb: Sandbox): Promise<Row[]> {
  const rows: Row[] = [];
  const warren = await WarrenSandbox.connect(sb.sandboxId, ctx.sdk);
  const downloads = join(ctx.workDir, 'downloads');
  await mkdir(downloads, { recursive: true });
  for (const [i, size] of SIZES.entries()) {
    const n = ctx.scale.filesN[i]!;
    const local = join(ctx.workDir, `upload-${size.bytes}.bin`);
    await writeFile(local, Buffer.alloc(size.bytes, 0x61));
    const judged = size.bytes >= JUDGED_BYTES;
    const ddWrite: number[] = [];
    const ddRead: number[] = [];
    const diskWrite: number[] = [];
    const diskRead: number[] = [];
    for (let k = 0; k < Math.max(n, 3); k++) {
      const t = await ddTimes(ctx.workDir, size.bytes);
      ddWrite.push(t.writeMs);
      ddRead.push(t.readMs);
      if (!judged) continue;
      const d = await ddTimes(ctx.workDir, size.bytes, { disk: true });
      diskWrite.push(d.writeMs);
      diskRead.push(d.readMs);
    }
    for (const client of clients(sb, warren, downloads)) {
      ctx.progress(`row 6: ${n} × write/read ${size.label} (${client.via})`);
      const remote = `/workspace/bench-${size.bytes}.bin`;
      const write: number[] = [];
      const read: number[] = [];
      let writeErrors = 0;
      let readErrors = 0;
      let lastError = '';
      for (let k = 0; k < n; k++) {
        try {
          write.push(await timed(() => client.upload(local, remote)));
        } catch (err) {
          writeErrors++;
          lastError = (err as Error).message;
          continue;
        }
        try {
          read.push(
            await timed(async () => {
              const got = await client.download(remote, k);
              if (got !== size.bytes) throw new Error(`read ${got} bytes, wrote ${size.bytes}`);
            }),
          );
        } catch (err) {
          readErrors++;
          lastError = (err as Error).message;
        }
      }
      await client.cleanup();
      for (const [kind, samples, errors, dd, disk] of [
        ['write (files.upload)', write, writeErrors, ddWrite, diskWrite],
        [client.readName, read, readErrors, ddRead, diskRead],
      ] as const) {
        const stats = summarize(samples);
        const floor = summarize(dd);
        const note = [`${mbps(size.bytes, stats.p50)} vs dd ${mbps(size.bytes, floor.p50)}`];
        if (disk.length > 0) note.push(diskNote(size.bytes, stats, summarize(disk), kind.startsWith('write')));
        if (errors > 0) note.push(`last error: ${lastError.slice(0, 120)}`);
        rows.push({
          section: 6,
          name: `${kind} ${size.label}`,
          via: client.via,
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
    await rm(local, { force: true });
  }
  return rows;
}

/** The transfer's speed as a share of the disk's own (`dd` with `fdatasync` / `O_DIRECT`). */
function diskNote(bytes: number, stats: Summary, disk: Summary, write: boolean): string {
  const how = write ? 'dd + fdatasync' : 'dd O_DIRECT';
  const share = stats.p50 > 0 ? Math.round((100 * disk.p50) / stats.p50) : 0;
  return `disk itself (${how}) ${mbps(bytes, disk.p50)}: ${share} % of it`;
}
