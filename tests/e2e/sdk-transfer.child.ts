// Child process of sdk-transfer.test.ts: uploads and downloads one large file
// with @warren/sdk while sampling its own RSS, then prints the numbers as JSON.
import { Sandbox } from '@warren/sdk';

const [sandboxId, localIn, remote, localOut] = process.argv.slice(2);
if (!sandboxId || !localIn || !remote || !localOut) throw new Error('usage: <sandboxId> <localIn> <remote> <localOut>');

const sb = await Sandbox.connect(sandboxId);
// A warm-up call so the baseline includes the loaded SDK, undici and ws.
await sb.files.exists('/workspace');
global.gc?.();
const baselineRss = process.memoryUsage.rss();
let peakRss = baselineRss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}, 20);

const uploaded = await sb.files.upload(localIn, remote);
const uploadPeakRss = peakRss;
const downloaded = await sb.files.download(remote, localOut);
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage.rss());
process.stdout.write(
  `${JSON.stringify({ baselineRss, uploadPeakRss, peakRss, uploadedBytes: uploaded.size, downloadedBytes: downloaded })}\n`,
);
