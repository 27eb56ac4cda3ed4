import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Sandbox } from '@warren/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);
const ctx = inject('warren');
const MiB = 1024 * 1024;
const SIZE = 200 * MiB;

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('@warren/sdk streams large files', () => {
  let sb: Sandbox;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-sdk-transfer-'));
    sb = await Sandbox.create({ baseURL: ctx.baseURL, apiKey: ctx.apiKey, template: 'base' });
  });

  afterAll(async () => {
    await sb?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads and downloads 200 MiB with the SDK process RSS growing far less than the file', async () => {
    // Random content (1 MiB of random bytes per MiB, rotated) so nothing along the way can compress it.
    const input = join(dir, 'big.bin');
    const seed = randomBytes(MiB);
    const out = createWriteStream(input);
    for (let i = 0; i < SIZE / MiB; i++) {
      const chunk = Buffer.concat([seed.subarray(i % MiB), seed.subarray(0, i % MiB)]);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    const expected = await sha256(input);

    const output = join(dir, 'back.bin');
    const { stdout } = await run(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        join(import.meta.dirname, 'sdk-transfer.child.ts'),
        sb.sandboxId,
        input,
        '/workspace/big.bin',
        output,
      ],
      {
        env: { ...process.env, WARREN_URL: ctx.baseURL, WARREN_API_KEY: ctx.apiKey },
        maxBuffer: 1024 * 1024,
        timeout: 170_000,
      },
    );
    const m = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
      baselineRss: number;
      uploadPeakRss: number;
      peakRss: number;
      uploadedBytes: number;
      downloadedBytes: number;
    };
    console.log(
      `[sdk-transfer] baseline RSS ${(m.baselineRss / MiB).toFixed(1)} MiB; peak during upload ${(m.uploadPeakRss / MiB).toFixed(1)} MiB; peak overall ${(m.peakRss / MiB).toFixed(1)} MiB; file ${SIZE / MiB} MiB`,
    );
    expect(m.uploadedBytes).toBe(SIZE);
    expect(m.downloadedBytes).toBe(SIZE);
    // Memory bound (not a timing threshold): a buffered transfer would grow RSS by at least the file size.
    expect(m.peakRss - m.baselineRss).toBeLessThan(100 * MiB);

    expect(await sha256(output)).toBe(expected);
    const inSandbox = await sb.commands.run('sha256sum /workspace/big.bin');
    expect(inSandbox.stdout.split(' ')[0]).toBe(expected);
  });
});
