/**
 * File upload and download: stream a local file into the sandbox, compress it
 * there, and stream the result back. Neither transfer holds the file in memory.
 *
 *   npx tsx examples/file-transfer.ts
 *   EXAMPLE_OUTPUT_DIR=/tmp EXAMPLE_SIZE_MIB=64 npx tsx examples/file-transfer.ts
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { Sandbox } from '@warren/sdk';

const outputDir = process.env.EXAMPLE_OUTPUT_DIR ?? process.cwd();
const sizeMiB = Number(process.env.EXAMPLE_SIZE_MIB ?? 16);

// A log-like file: compressible, but not trivially.
const local = join(outputDir, 'events.log');
const lines: string[] = [];
for (let i = 0, bytes = 0; bytes < sizeMiB * 1024 * 1024; i++) {
  const line = `${new Date(1_700_000_000_000 + i * 1000).toISOString()} event=${i % 7} id=${randomBytes(6).toString('hex')}`;
  lines.push(line);
  bytes += line.length + 1;
}
await writeFile(local, `${lines.join('\n')}\n`);
const sha = async (file: string, gunzip = false) => {
  const h = createHash('sha256');
  const stream = gunzip ? createReadStream(file).pipe(createGunzip()) : createReadStream(file);
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
};

await using sandbox = await Sandbox.create({ template: 'base' });
const uploaded = await sandbox.files.upload(local, '/workspace/events.log');
console.log(`uploaded ${uploaded.size} bytes to ${uploaded.path}`);

await sandbox.commands.run('gzip -k -9 /workspace/events.log');
const [gz] = (await sandbox.files.list('/workspace')).filter((f) => f.name === 'events.log.gz');
console.log(`compressed in the sandbox: ${gz?.size} bytes`);

const back = join(outputDir, 'events.log.gz');
const bytes = await sandbox.files.download('/workspace/events.log.gz', back);
console.log(`downloaded ${bytes} bytes to ${back} (${(await stat(back)).size} on disk)`);

const same = (await sha(local)) === (await sha(back, true));
console.log(`round trip intact: ${same}`);
if (!same) process.exitCode = 1;
