/**
 * Splits a byte stream into newline-terminated lines, holding at most
 * `maxLineBytes` of an unfinished line: a longer line is reported through
 * `onOverflow` and skipped up to its end.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #onLine: (line: string) => void;
  readonly #onOverflow: () => void;
  #parts: Buffer[] = [];
  #size = 0;
  #skipping = false;

  constructor(options: { maxLineBytes: number; onLine: (line: string) => void; onOverflow?: () => void }) {
    this.#maxLineBytes = options.maxLineBytes;
    this.#onLine = options.onLine;
    this.#onOverflow = options.onOverflow ?? (() => undefined);
  }

  /** Feeds a chunk; complete lines are delivered synchronously, without their newline. */
  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      this.#append(chunk.subarray(start, nl));
      if (!this.#skipping) this.#onLine(Buffer.concat(this.#parts, this.#size).toString('utf8'));
      this.#parts = [];
      this.#size = 0;
      this.#skipping = false;
      start = nl + 1;
    }
    if (start < chunk.length) this.#append(chunk.subarray(start));
  }

  #append(part: Buffer): void {
    if (this.#skipping || part.length === 0) return;
    if (this.#size + part.length > this.#maxLineBytes) {
      this.#parts = [];
      this.#size = 0;
      this.#skipping = true;
      this.#onOverflow();
      return;
    }
    this.#parts.push(Buffer.from(part));
    this.#size += part.length;
  }
}
