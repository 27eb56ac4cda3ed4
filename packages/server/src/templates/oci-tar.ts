/**
 * A streaming tar reader for image layers and image archives: ustar, GNU
 * (`L`/`K` long names, base-256 numbers) and pax (`x`/`g` records for path,
 * linkpath, size, uid, gid, mtime). It only parses; what an entry may do to a
 * filesystem is decided by `oci-layers.ts`.
 */
import { open } from 'node:fs/promises';

/** Tar type flags the readers hand out (pax and GNU meta entries are consumed internally). */
export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo' | 'other';

/** One tar entry's header, after pax and GNU long-name records are applied. */
export interface TarHeader {
  /** Path as written in the archive (not normalized). */
  readonly path: string;
  readonly type: TarEntryType;
  /** The raw type flag character, for log lines about skipped entries. */
  readonly typeFlag: string;
  /** Permission bits including setuid/setgid/sticky (`& 0o7777`). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Size of the entry's data in bytes (0 for everything but regular files). */
  readonly size: number;
  /** Modification time in seconds since the epoch. */
  readonly mtime: number;
  /** Target of a symlink or hardlink. */
  readonly linkPath: string;
}

/** A malformed archive (bad checksum, truncated data, invalid number). */
export class TarFormatError extends Error {
  override readonly name = 'TarFormatError';
}

const BLOCK = 512;

/** Buffers an async byte source and hands out exact-length reads. */
class ByteReader {
  private chunks: Buffer[] = [];
  private length = 0;
  private ended = false;
  private readonly source: AsyncIterator<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.length < n && !this.ended) {
      const next = await this.source.next();
      if (next.done) {
        this.ended = true;
        break;
      }
      const chunk = Buffer.isBuffer(next.value)
        ? next.value
        : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
  }

  private take(n: number): Buffer {
    const out: Buffer[] = [];
    let needed = n;
    while (needed > 0) {
      const head = this.chunks[0]!;
      if (head.length <= needed) {
        out.push(head);
        this.chunks.shift();
        needed -= head.length;
      } else {
        out.push(head.subarray(0, needed));
        this.chunks[0] = head.subarray(needed);
        needed = 0;
      }
    }
    this.length -= n;
    return out.length === 1 ? out[0]! : Buffer.concat(out, n);
  }

  /** Exactly `n` bytes, or `undefined` at a clean end of input. @throws TarFormatError on a partial read. */
  async read(n: number): Promise<Buffer | undefined> {
    await this.fill(n);
    if (this.length === 0 && this.ended) return undefined;
    if (this.length < n) throw new TarFormatError('unexpected end of archive');
    return this.take(n);
  }

  /** Yields the next `n` bytes in chunks as they arrive. @throws TarFormatError if the input ends first. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let remaining = n;
    while (remaining > 0) {
      if (this.length === 0) await this.fill(1);
      if (this.length === 0) throw new TarFormatError('unexpected end of archive');
      const head = this.chunks[0]!;
      const size = Math.min(head.length, remaining);
      remaining -= size;
      yield this.take(size);
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) {
      // discard
    }
  }

  /** Reads and discards everything left in the source. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.length = 0;
    while (!this.ended) {
      const next = await this.source.next();
      if (next.done) this.ended = true;
    }
  }
}

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

function tarNumber(block: Buffer, start: number, length: number): number {
  const field = block.subarray(start, start + length);
  if ((field[0]! & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement with the top bit as marker.
    if ((field[0]! & 0x40) !== 0) throw new TarFormatError('negative number in tar header');
    let value = field[0]! & 0x3f;
    for (let i = 1; i < field.length; i++) {
      value = value * 256 + field[i]!;
      if (!Number.isSafeInteger(value)) throw new TarFormatError('number too large in tar header');
    }
    return value;
  }
  const text = cString(block, start, length).replace(/ /g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`invalid octal number ${JSON.stringify(text)} in tar header`);
  const value = Number.parseInt(text, 8);
  if (!Number.isSafeInteger(value)) throw new TarFormatError('number too large in tar header');
  return value;
}

function checksumOk(block: Buffer): boolean {
  const stored = tarNumber(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number.parseInt(data.subarray(offset, space).toString('ascii'), 10);
    if (!Number.isSafeInteger(length) || length <= space - offset || offset + length > data.length) {
      throw new TarFormatError('invalid pax record');
    }
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    offset += length;
  }
  return records;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'directory',
  '6': 'fifo',
};

/** Meta entries larger than this (pax records, GNU long names) are rejected. */
const MAX_META_BYTES = 1024 * 1024;

/** Parses one 512-byte header block (without pax/GNU overrides). */
function parseHeaderBlock(block: Buffer): TarHeader {
  if (!checksumOk(block)) throw new TarFormatError('tar header checksum mismatch (not a tar archive?)');
  const typeFlag = String.fromCharCode(block[156]!);
  const magic = block.subarray(257, 263).toString('latin1');
  let path = cString(block, 0, 100);
  // POSIX ustar ("ustar\0") keeps a path prefix; GNU ("ustar ") uses those bytes for other fields.
  if (magic === 'ustar\0') {
    const prefix = cString(block, 345, 155);
    if (prefix !== '') path = `${prefix}/${path}`;
  }
  const header: TarHeader = {
    path,
    type: TYPES[typeFlag] ?? 'other',
    typeFlag,
    mode: tarNumber(block, 100, 8) & 0o7777,
    uid: tarNumber(block, 108, 8),
    gid: tarNumber(block, 116, 8),
    size: tarNumber(block, 124, 12),
    mtime: tarNumber(block, 136, 12),
    linkPath: cString(block, 157, 100),
  };
  return header;
}

/** Pax records and GNU long names read so far, applied to the next real entry. */
class MetaRecords {
  private readonly global = new Map<string, string>();
  private pax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;

  /** True for the type flags of meta entries (pax `x`/`g`, GNU `L`/`K`). */
  static isMeta(typeFlag: string): boolean {
    return typeFlag === 'x' || typeFlag === 'g' || typeFlag === 'L' || typeFlag === 'K';
  }

  /** Checks a meta entry's size before its content is read. */
  static checkSize(size: number): void {
    if (size > MAX_META_BYTES) throw new TarFormatError(`tar meta entry of ${size} bytes is too large`);
  }

  add(typeFlag: string, content: Buffer): void {
    if (typeFlag === 'x') for (const [k, v] of parsePax(content)) this.pax.set(k, v);
    else if (typeFlag === 'g') for (const [k, v] of parsePax(content)) this.global.set(k, v);
    else {
      const end = content.indexOf(0);
      const text = content.subarray(0, end === -1 ? content.length : end).toString('utf8');
      if (typeFlag === 'L') this.longName = text;
      else this.longLink = text;
    }
  }

  /** `header` with the pending records applied; the per-entry records are then forgotten. */
  apply(header: TarHeader): TarHeader {
    const pax = new Map([...this.global, ...this.pax]);
    const num = (key: string, fallback: number) => {
      const value = pax.get(key);
      if (value === undefined) return fallback;
      const parsed = Number.parseFloat(value);
      if (!Number.isFinite(parsed) || parsed < 0)
        throw new TarFormatError(`invalid pax ${key} ${JSON.stringify(value)}`);
      return Math.floor(parsed);
    };
    const result = {
      ...header,
      path: pax.get('path') ?? this.longName ?? header.path,
      linkPath: pax.get('linkpath') ?? this.longLink ?? header.linkPath,
      size: num('size', header.size),
      uid: num('uid', header.uid),
      gid: num('gid', header.gid),
      mtime: num('mtime', header.mtime),
    };
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    return result;
  }
}

function dataSizeOf(header: TarHeader): number {
  return header.type === 'file' || header.type === 'other' ? header.size : 0;
}

/** An entry handed out by `readTar`: read `body` before asking for the next entry, or it is skipped. */
export interface TarEntry {
  readonly header: TarHeader;
  readonly body: AsyncIterable<Buffer>;
}

/**
 * Reads a tar stream entry by entry. Each entry's `body` must be consumed
 * before the next iteration or it is skipped; once the end-of-archive marker
 * is read the rest of the input is drained (so a hash over the input covers
 * all of it).
 *
 * @throws TarFormatError on a malformed archive.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const reader = new ByteReader(source);
  const meta = new MetaRecords();
  for (;;) {
    const block = await reader.read(BLOCK);
    if (block === undefined) return;
    if (block.every((b) => b === 0)) {
      await reader.drain();
      return;
    }
    const raw = parseHeaderBlock(block);
    if (MetaRecords.isMeta(raw.typeFlag)) {
      MetaRecords.checkSize(raw.size);
      const padded = Math.ceil(raw.size / BLOCK) * BLOCK;
      const data = (await reader.read(padded)) ?? Buffer.alloc(0);
      if (data.length < padded) throw new TarFormatError('unexpected end of archive');
      meta.add(raw.typeFlag, data.subarray(0, raw.size));
      continue;
    }
    const header = meta.apply(raw);
    // Like Go's archive/tar, link, device, directory and fifo entries carry no data whatever their size field says.
    const dataSize = dataSizeOf(header);
    const dataPadded = Math.ceil(dataSize / BLOCK) * BLOCK;
    // Bytes of this entry (data and padding) still unread in the input.
    let remaining = dataPadded;
    let started = false;
    const body = (async function* () {
      if (started) throw new Error('tar entry body read twice');
      started = true;
      if (header.type !== 'file') return;
      for await (const chunk of reader.stream(dataSize)) {
        remaining -= chunk.length;
        yield chunk;
      }
    })();
    yield { header: header.type === 'file' ? header : { ...header, size: 0 }, body };
    await reader.skip(remaining);
  }
}

/** Where a member's data sits inside a tar file, from `indexTarFile`. */
export interface TarFileMember {
  readonly header: TarHeader;
  /** Byte offset of the member's data in the file. */
  readonly offset: number;
}

/**
 * Lists the members of an uncompressed tar file by reading only its headers
 * (data is skipped by seeking), so a member can then be read by offset.
 *
 * @param maxMembers stop with an error after this many members.
 * @throws TarFormatError on a malformed archive.
 */
export async function indexTarFile(path: string, maxMembers = 100_000): Promise<Map<string, TarFileMember>> {
  const handle = await open(path, 'r');
  try {
    const { size: fileSize } = await handle.stat();
    const members = new Map<string, TarFileMember>();
    const readAt = async (position: number, length: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead < length) throw new TarFormatError('unexpected end of archive');
      return buffer;
    };
    const meta = new MetaRecords();
    let position = 0;
    while (position + BLOCK <= fileSize) {
      const block = await readAt(position, BLOCK);
      if (block.every((b) => b === 0)) break;
      const raw = parseHeaderBlock(block);
      position += BLOCK;
      if (MetaRecords.isMeta(raw.typeFlag)) {
        MetaRecords.checkSize(raw.size);
        meta.add(raw.typeFlag, await readAt(position, raw.size));
        position += Math.ceil(raw.size / BLOCK) * BLOCK;
        continue;
      }
      const header = meta.apply(raw);
      const dataSize = dataSizeOf(header);
      if (position + dataSize > fileSize) throw new TarFormatError('unexpected end of archive');
      members.set(normalizeMemberPath(header.path), { header, offset: position });
      if (members.size > maxMembers) throw new TarFormatError(`archive has more than ${maxMembers} members`);
      position += Math.ceil(dataSize / BLOCK) * BLOCK;
    }
    return members;
  } finally {
    await handle.close();
  }
}

/** `./a//b/` → `a/b`; used as the key of archive members. */
export function normalizeMemberPath(path: string): string {
  return path
    .split('/')
    .filter((part) => part !== '' && part !== '.')
    .join('/');
}
