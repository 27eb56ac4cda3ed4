import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Sandbox, APIError as SDKAPIError } from '@warren/sdk';
import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { APIError, CLIError } from '../../errors.ts';
import { say } from '../../output.ts';
import { type CopyOperand, formatBytes, formatDuration, parseCopyOperand } from '../../parse.ts';
import { Progress } from '../../progress.ts';

type Remote = Extract<CopyOperand, { kind: 'remote' }>;

/**
 * The sandbox through the SDK (which streams large files in parts). A sandbox
 * that is not running is refused here: connecting would resume a paused one.
 */
async function connect(ctx: Context, id: string): Promise<Sandbox> {
  const info = await ctx.client().sandbox(id);
  if (info.status !== 'running') {
    throw new CLIError(
      `sandbox ${id} is ${info.status}${info.status === 'paused' ? ` (warren sandbox resume ${id})` : ''}`,
    );
  }
  return Sandbox.connect(id, { baseURL: ctx.config().url, apiKey: ctx.client().authHeaders()['x-api-key'] });
}

/** SDK errors become the CLI's (same `message (code, request id)` line). */
function fromSDK(err: unknown): unknown {
  if (err instanceof SDKAPIError) return APIError.from(err.status, err.body, err.headers);
  return err;
}

async function upload(ctx: Context, from: string, to: Remote): Promise<number> {
  let name = 'stdin';
  let total: number | undefined;
  if (from !== '-') {
    const st = await stat(from).catch((err: NodeJS.ErrnoException) => {
      throw new CLIError(`${from}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
    if (st.isDirectory()) throw new CLIError(`${from} is a directory; cp copies single files (tar it first)`);
    name = basename(from);
    total = st.size;
  }
  // A destination ending in / is a directory: keep the file's name.
  const path = to.path.endsWith('/') ? `${to.path}${name}` : to.path;
  const sandbox = await connect(ctx, to.sandboxId);
  const source = from === '-' ? process.stdin : createReadStream(from, { highWaterMark: 64 * 1024 });
  const r = await sandbox.files.write(path, meter(source, total, 'uploading'));
  return r.size;
}

/** Passes a stream through, showing bytes moved on a terminal (nothing otherwise). */
async function* meter(
  source: AsyncIterable<Uint8Array>,
  total: number | undefined,
  verb: string,
): AsyncGenerator<Uint8Array> {
  const progress = new Progress({ statusLines: false });
  let moved = 0;
  try {
    for await (const chunk of source) {
      moved += chunk.byteLength;
      const share = total ? ` of ${formatBytes(total)} (${Math.floor((moved / total) * 100)}%)` : '';
      progress.status(`${verb} ${formatBytes(moved)}${share}`);
      yield chunk;
    }
  } finally {
    progress.done();
  }
}

async function download(ctx: Context, from: Remote, to: string): Promise<number> {
  const sandbox = await connect(ctx, from.sandboxId);
  const stream = await sandbox.files.read(from.path, { format: 'stream' });
  const body = Readable.from(
    meter(Readable.fromWeb(stream as unknown as WebReadableStream<Uint8Array>), undefined, 'downloading'),
    { objectMode: false },
  );
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  if (to === '-') {
    await pipeline(body, count, process.stdout, { end: false });
    return bytes;
  }
  let target = to;
  const st = await stat(to).catch(() => undefined);
  if (st?.isDirectory() || to.endsWith('/')) target = join(to, basename(from.path));
  // Written next to the target and renamed into place, so a failed copy never leaves half a file.
  const partial = join(dirname(target), `.${basename(target)}.warren-${randomBytes(4).toString('hex')}`);
  try {
    await pipeline(body, count, createWriteStream(partial, { flags: 'wx', mode: 0o644 }));
    await rename(partial, target);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  return bytes;
}

/** `warren sandbox cp <source> <destination>`: one file either way, streamed. */
export function registerCopy(parent: Command, ctx: Context): void {
  parent
    .command('cp')
    .description('copy a file into or out of a sandbox, streamed (paths inside the sandbox: under /workspace or /tmp)')
    .argument('<source>', 'local file (- for stdin) or <id>:/path/in/sandbox')
    .argument('<destination>', '<id>:/path/in/sandbox (ending in / keeps the name) or local path (- for stdout)')
    .addHelpText(
      'after',
      '\nExamples:\n  warren sandbox cp ./data.csv sb_123:/workspace/data.csv\n  warren sandbox cp sb_123:/workspace/out.png ./out.png',
    )
    .action(async (source: string, destination: string) => {
      const from = parseCopyOperand(source);
      const to = parseCopyOperand(destination);
      const started = Date.now();
      let bytes: number;
      try {
        if (from.kind === 'local' && to.kind === 'remote') bytes = await upload(ctx, from.path, to);
        else if (from.kind === 'remote' && to.kind === 'local') bytes = await download(ctx, from, to.path);
        else throw new CLIError('exactly one of source and destination must be <id>:/path');
      } catch (err) {
        throw fromSDK(err);
      }
      say(`copied ${formatBytes(bytes)} in ${formatDuration(Date.now() - started)}`);
    });
}
