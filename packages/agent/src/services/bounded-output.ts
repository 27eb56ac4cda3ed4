/**
 * Collects a stream's bytes up to a limit; bytes past it are counted and
 * dropped, so memory stays bounded however much a process prints.
 */
export class BoundedOutput {
  readonly #limit: number;
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  #seen = 0;

  constructor(limitBytes: number) {
    this.#limit = limitBytes;
  }

  /** Adds a chunk, keeping only what fits under the limit. */
  push(chunk: Buffer): void {
    this.#seen += chunk.length;
    const room = this.#limit - this.#kept;
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    // Copy what is a view of a larger buffer (a slice of this chunk, or a chunk that is itself a view, like
    // the exec helper's frames), so a large dropped tail or read buffer does not stay referenced.
    this.#chunks.push(part.byteLength === part.buffer.byteLength ? part : Buffer.from(part));
    this.#kept += part.length;
  }

  /** True once any byte was dropped. */
  get truncated(): boolean {
    return this.#seen > this.#kept;
  }

  /** Bytes received, kept or not. */
  get totalBytes(): number {
    return this.#seen;
  }

  /** The kept bytes as UTF-8; a character cut by the limit is dropped rather than mangled. */
  text(): string {
    let buf = Buffer.concat(this.#chunks, this.#kept);
    if (this.truncated) buf = buf.subarray(0, completeUtf8Length(buf));
    return buf.toString('utf8');
  }
}

/** Length of `buf` without a trailing incomplete UTF-8 sequence. */
function completeUtf8Length(buf: Buffer): number {
  const end = buf.length;
  for (let i = end - 1; i >= 0 && i >= end - 4; i--) {
    const byte = buf[i] ?? 0;
    if ((byte & 0xc0) === 0x80) continue; // continuation byte
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return end - i >= need ? end : i;
  }
  return end;
}
