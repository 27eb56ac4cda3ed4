import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { CLIError } from '../../errors.ts';
import { say } from '../../output.ts';
import { type CopyOperand, formatBytes, formatDuration, parseCopyOperand } from '../../parse.ts';

/** Quotes a multipart header parameter (RFC 7578: quotes and CR/LF escaped). */
function quoteParam(s: string): string {
  return `"${s.replace(/[\r\n"\\]/g, (c) => encodeURIComponent(c))}"`;
}

/**
 * A `multipart/form-data` body with `path` then `file` whose file part is
 * streamed from `source`, never held in memory whole.
 */
function multipartStream(
  fields: { path: string; filename: string },
  source: Readable,
): { body: ReadableStream<Uint8Array>; contentType: string } {
  const boundary = `----warren${randomBytes(12).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n${fields.path}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename=${quoteParam(fields.filename)}\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  async function* parts() {
    yield head;
    for await (const chunk of source) yield chunk as Buffer;
    yield tail;
  }
  return {
    body: Readable.toWeb(Readable.from(parts())) as ReadableStream<Uint8Array>,
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}

async function upload(ctx: Context, from: string, to: Extract<CopyOperand, { kind: 'remote' }>): Promise<number> {
  let source: Readable;
  let name: string;
  if (from === '-') {
    source = process.stdin;
    name = 'stdin';
  } else {
    const st = await stat(from).catch((err: NodeJS.ErrnoException) => {
      throw new CLIError(`${from}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
    if (st.isDirectory()) throw new CLIError(`${from} is a directory; cp copies single files (tar it first)`);
    source = createReadStream(from);
    name = basename(from);
  }
  // A destination ending in / is a directory: keep the file's name.
  const path = to.path.endsWith('/') ? `${to.path}${name}` : to.path;
  const agent = await ctx.client().agent(to.sandboxId);
  const { body, contentType } = multipartStream({ path, filename: name }, source);
  const res = await agent.fetch('/files/upload', {
    method: 'POST',
    headers: { 'content-type': contentType },
    body,
    duplex: 'half',
  });
  const r = (await res.json()) as { path?: string; size?: number };
  return r.size ?? 0;
}

async function download(ctx: Context, from: Extract<CopyOperand, { kind: 'remote' }>, to: string): Promise<number> {
  const agent = await ctx.client().agent(from.sandboxId);
  const res = await agent.fetch(`/files/download?${new URLSearchParams({ path: from.path })}`);
  if (!res.body) throw new CLIError('empty answer from the sandbox');
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
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
      if (from.kind === 'local' && to.kind === 'remote') bytes = await upload(ctx, from.path, to);
      else if (from.kind === 'remote' && to.kind === 'local') bytes = await download(ctx, from, to.path);
      else throw new CLIError('exactly one of source and destination must be <id>:/path');
      say(`copied ${formatBytes(bytes)} in ${formatDuration(Date.now() - started)}`);
    });
}
