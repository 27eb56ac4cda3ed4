import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, posix, relative, resolve, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, mode: number, mtimeMs: number, type: '0' | '5'): Buffer {
  const h = Buffer.alloc(512);
  let prefix = '';
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', Math.min(name.length - 2, 155));
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100)
      throw new Error(`Path too long for a tar entry: ${name}`);
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  h.write(base, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 8, 'ascii');
  h.write(octal(0, 8), 108, 8, 'ascii');
  h.write(octal(0, 8), 116, 8, 'ascii');
  h.write(octal(size, 12), 124, 12, 'ascii');
  h.write(octal(Math.floor(mtimeMs / 1000), 12), 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii');
  h.write(type, 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/**
 * A gzipped ustar archive of `sources` (files or directories, relative to
 * `contextDir`), entries named by their path relative to the context
 * (e.g. `app/`, `app/main.py`). Symlinks are skipped.
 * @throws {Error} when a source lies outside the context directory.
 */
export async function tarGz(contextDir: string, sources: readonly string[]): Promise<Buffer> {
  const root = resolve(contextDir);
  const blocks: Buffer[] = [];
  const seen = new Set<string>();
  const add = async (abs: string): Promise<void> => {
    const rel = relative(root, abs).split(sep).join('/');
    if (rel.startsWith('..') || posix.isAbsolute(rel)) throw new Error(`COPY source outside the build context: ${abs}`);
    if (seen.has(rel)) return;
    seen.add(rel);
    const st = await lstat(abs);
    if (st.isDirectory()) {
      if (rel !== '') blocks.push(header(`${rel}/`, 0, st.mode, st.mtimeMs, '5'));
      for (const name of (await readdir(abs)).sort()) await add(join(abs, name));
    } else if (st.isFile()) {
      const data = await readFile(abs);
      blocks.push(header(rel, data.length, st.mode, st.mtimeMs, '0'), data);
      const pad = (512 - (data.length % 512)) % 512;
      if (pad > 0) blocks.push(Buffer.alloc(pad));
    }
  };
  for (const s of sources) await add(resolve(root, s));
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}
