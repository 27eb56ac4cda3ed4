/**
 * Warren benchmarks: starts real Warren servers on this machine (their own
 * bridge, nft table, cgroup parent and data directory), drives them over HTTP
 * and with the official `@hopx-ai/sdk`, measures the machine's own floor for
 * every row in the same run, prints a markdown table and writes JSON.
 *
 * npm run bench [-- --scale full|quick|smoke] [--only 1,3,…] [--out file.json]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SCALES } from './context.ts';
import { markdown } from './report.ts';
import { runBench } from './run.ts';

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: 'full' },
    only: { type: 'string' },
    out: { type: 'string', default: 'bench/results/latest.json' },
  },
});
const scale = SCALES[values.scale];
if (!scale) throw new Error(`--scale must be one of ${Object.keys(SCALES).join(', ')}`);

const began = Date.now();
function progress(message: string): void {
  process.stderr.write(`[bench ${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
}

const report = await runBench({
  scale,
  ...(values.only ? { only: new Set(values.only.split(',').map(Number)) } : {}),
  progress,
});
const out = resolve(values.out);
await mkdir(dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(markdown(report));
progress(`JSON written to ${out}`);
if (report.failures.length > 0) process.exitCode = 1;
