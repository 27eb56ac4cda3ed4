import { formatDuration } from './parse.ts';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * A live progress display on stderr: log lines scroll above one status line
 * (spinner, text, elapsed time) that is redrawn in place. When stderr is not
 * a terminal, log lines are written as they come and a status line only
 * when its text changes.
 */
export class Progress {
  readonly #stream: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #started = Date.now();
  #status = '';
  #frame = 0;
  #timer: NodeJS.Timeout | undefined;
  #partial = '';

  readonly #statusLines: boolean;

  /**
   * @param options.statusLines when stderr is not a terminal, write status changes as lines
   *   (`false`: only on a terminal, for short operations). @default true
   */
  constructor(options: { stream?: NodeJS.WriteStream; statusLines?: boolean } = {}) {
    const stream = options.stream ?? process.stderr;
    this.#stream = stream;
    this.#tty = stream.isTTY === true;
    this.#statusLines = options.statusLines ?? true;
    if (this.#tty) {
      this.#timer = setInterval(() => this.#draw(), 100);
      this.#timer.unref();
    }
  }

  /** Sets the status line text (e.g. `step 2/5 RUN pip install flask · 40%`). */
  status(text: string): void {
    if (text === this.#status) return;
    this.#status = text;
    if (this.#tty) this.#draw();
    else if (this.#statusLines) this.#stream.write(`==> ${text}\n`);
  }

  /** Writes log text (may hold partial lines; they are completed by later calls). */
  log(text: string): void {
    if (text === '') return;
    const all = this.#partial + text;
    const cut = all.lastIndexOf('\n') + 1;
    this.#partial = all.slice(cut);
    if (cut === 0) return;
    this.#clear();
    this.#stream.write(all.slice(0, cut));
    this.#draw();
  }

  /** Ends the display, replacing the status line with a final line when one is given. */
  done(text?: string): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#clear();
    if (this.#partial !== '') this.#stream.write(`${this.#partial}\n`);
    this.#partial = '';
    if (text !== undefined) this.#stream.write(`${text}\n`);
  }

  /** Time since the display started, formatted. */
  elapsed(): string {
    return formatDuration(Date.now() - this.#started);
  }

  #clear(): void {
    if (this.#tty) this.#stream.write('\r\u001b[K');
  }

  #draw(): void {
    if (!this.#tty || this.#timer === undefined) return;
    this.#frame = (this.#frame + 1) % FRAMES.length;
    const columns = this.#stream.columns || 80;
    const line = `${FRAMES[this.#frame]} ${this.#status} · ${this.elapsed()}`;
    this.#stream.write(`\r\u001b[K${line.length > columns - 1 ? `${line.slice(0, columns - 2)}…` : line}`);
  }
}
