import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';

/** What the helper starts: like `child_process.spawn` with stdin from /dev/null and piped stdout/stderr. */
export interface HelperSpawnRequest {
  /** Executable name (looked up in `env.PATH`) or path. */
  command: string;
  args: readonly string[];
  cwd: string;
  /** Complete environment of the child. */
  env: Readonly<Record<string, string>>;
}

/** Output stream of a child: 1 stdout, 2 stderr. */
export type HelperStream = 1 | 2;

/** What the helper reports about one child, in order; nothing follows `onLost`. */
export interface HelperChildEvents {
  onData(stream: HelperStream, chunk: Buffer): void;
  /** The stream reached end of file (every writer, grandchildren included, closed it). */
  onEnd(stream: HelperStream): void;
  /** The child exited with `code`, or was killed by `signal`. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  /** The helper died: the child's output and exit will never be reported. */
  onLost(reason: string): void;
}

/** Outcome of {@link ExecHelper.spawn}. */
export type HelperSpawnResult =
  | { readonly pid: number; readonly child: HelperChild }
  /** The child could not start (`code` ENOENT, EACCES…), or the helper died before saying whether it did. */
  | { readonly error: NodeJS.ErrnoException };

/** A child started by the helper: flow control of its output. */
export interface HelperChild {
  /** Stop reading the child's pipes; once they fill, the child blocks writing. */
  pause(): void;
  resume(): void;
  /** Stop reading the child's pipes for good (no `onEnd` follows); its exit is still reported. */
  close(): void;
}

/** Options of {@link ExecHelper}. */
export interface ExecHelperOptions {
  /** The static `warren-exec` binary. */
  path: string;
  /** Where the helper's start, failure and death are logged. @default no logging */
  log?: (line: string) => void;
}

const HEADER_BYTES = 9;
const REPLY_BYTES = 12;

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, no]) => [no, name]));
const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, no]) => [no, name as NodeJS.Signals]),
);

interface Live {
  readonly events: HelperChildEvents;
  exited: boolean;
  /** Streams not yet ended or closed. */
  open: number;
}

type State = 'idle' | 'starting' | 'ready' | 'dead';

/**
 * The agent's side of `warren-exec` (packages/server/native/warren-exec.c):
 * one long-lived static helper that starts children with posix_spawn (vfork
 * semantics) instead of a fork of the agent, whose cost grows with the
 * agent's memory and blocks its event loop.
 *
 * A spawn is synchronous like `child_process.spawn`: the request is written to
 * the helper's request pipe and the agent waits for the helper's 12-byte
 * answer (the pid, or the errno of the failed exec). Output, end of file and
 * exit arrive later as frames on the helper's stdout. The two pipes are the
 * helper's own, opened through `/proc/<helper>/fd/` so the agent gets
 * blocking descriptors of them.
 *
 * While the helper is not ready (before its first start, while it starts, or
 * after it failed or died) {@link spawn} returns `null` and the caller spawns
 * directly; the first call starts it. When it dies, every child it was
 * tracking gets `onLost`, and it is not started again.
 */
export class ExecHelper {
  readonly #path: string;
  readonly #log: (line: string) => void;
  #state: State = 'idle';
  #proc: ChildProcess | undefined;
  #requestFd = -1;
  #replyFd = -1;
  #nextId = 1;
  readonly #live = new Map<number, Live>();
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #reply = Buffer.alloc(REPLY_BYTES);

  constructor(options: ExecHelperOptions) {
    this.#path = options.path;
    this.#log = options.log ?? (() => undefined);
  }

  /** True once the helper answered and spawns go through it. */
  get ready(): boolean {
    return this.#state === 'ready';
  }

  /** Pid of the helper process while it runs. */
  get pid(): number | undefined {
    return this.#state === 'starting' || this.#state === 'ready' ? this.#proc?.pid : undefined;
  }

  /** Starts the helper if it never was; it is ready once it said hello (asynchronously). */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'starting';
    let proc: ChildProcess;
    try {
      proc = spawn(this.#path, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    } catch (err) {
      this.#die(`cannot start ${this.#path}: ${(err as Error).message}`);
      return;
    }
    this.#proc = proc;
    proc.on('error', (err) => this.#die(`cannot start ${this.#path}: ${err.message}`));
    proc.on('exit', (code, signal) => this.#die(`${this.#path} exited (${signal ?? code})`));
    proc.stdin?.on('error', () => undefined);
    proc.stdout?.on('data', (chunk: Buffer) => this.#onData(chunk));
    proc.stdout?.on('close', () => this.#die(`${this.#path} closed its output`));
    this.#setRef(false);
  }

  /**
   * Starts a child through the helper: `null` when the helper is not ready
   * (the caller spawns directly; this starts the helper for the next call) or
   * when `request` holds a NUL byte, which only the direct spawn reports.
   */
  spawn(request: HelperSpawnRequest, events: HelperChildEvents): HelperSpawnResult | null {
    if (this.#state === 'idle') this.start();
    if (this.#state !== 'ready') return null;
    const strings = [request.cwd, request.command, ...request.args];
    for (const [name, value] of Object.entries(request.env)) strings.push(`${name}=${value}`);
    if (strings.some((s) => s.includes('\0'))) return null;
    const encoded = strings.map((s) => Buffer.from(`${s}\0`));
    const counts = Buffer.alloc(8);
    counts.writeUInt32LE(1 + request.args.length, 0);
    counts.writeUInt32LE(encoded.length - 2 - request.args.length, 4);
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_ffff ? 1 : this.#nextId + 1;
    if (!this.#send('S', id, [counts, ...encoded])) return null; // not received: nothing started

    let got = 0;
    try {
      while (got < REPLY_BYTES) {
        const n = readSync(this.#replyFd, this.#reply, got, REPLY_BYTES - got, null);
        if (n === 0) throw new Error('end of file');
        got += n;
      }
    } catch (err) {
      const reason = `${this.#path} died while starting ${request.command}: ${(err as Error).message}`;
      this.#die(reason);
      return { error: Object.assign(new Error(reason), { code: 'EHELPER' }) };
    }
    const [kind, value] = [this.#reply.readUInt32LE(4), this.#reply.readUInt32LE(8)];
    if (kind !== 0) {
      const code = errnoNames.get(value) ?? `E${value}`;
      return { error: Object.assign(new Error(`spawn ${request.command} ${code}`), { code, errno: -value }) };
    }
    this.#live.set(id, { events, exited: false, open: 2 });
    if (this.#live.size === 1) this.#setRef(true);
    return {
      pid: value,
      child: {
        pause: () => this.#control('P', id),
        resume: () => this.#control('R', id),
        close: () => {
          const live = this.#live.get(id);
          if (live === undefined) return;
          live.open = 0;
          this.#control('C', id);
          this.#forgetIfDone(id, live);
        },
      },
    };
  }

  /** Ends the helper; children it tracks get `onLost`. Later spawns go direct. */
  close(): void {
    this.#die('closed');
  }

  #control(type: 'P' | 'R' | 'C', id: number): void {
    if (this.#live.has(id)) this.#send(type, id, []);
  }

  /** Writes one request frame; false (and the helper is given up) when it cannot be written. */
  #send(type: string, id: number, payload: readonly Buffer[]): boolean {
    if (this.#state !== 'ready') return false;
    const length = payload.reduce((sum, b) => sum + b.length, 0);
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32LE(5 + length, 0);
    header.write(type, 4, 'latin1');
    header.writeUInt32LE(id, 5);
    const frame = payload.length === 0 ? header : Buffer.concat([header, ...payload], HEADER_BYTES + length);
    try {
      for (let off = 0; off < frame.length; ) off += writeSync(this.#requestFd, frame, off);
      return true;
    } catch (err) {
      this.#die(`cannot write to ${this.#path}: ${(err as Error).message}`);
      return false;
    }
  }

  #onData(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < HEADER_BYTES) return;
    let buf = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending, this.#pendingBytes);
    let off = 0;
    while (buf.length - off >= 4) {
      const frameEnd = off + 4 + buf.readUInt32LE(off);
      if (frameEnd > buf.length) break;
      const type = String.fromCharCode(buf[off + 4] ?? 0);
      const id = buf.readUInt32LE(off + 5);
      this.#onFrame(type, id, buf.subarray(off + HEADER_BYTES, frameEnd));
      off = frameEnd;
      if (this.#state === 'dead') return;
    }
    buf = buf.subarray(off);
    this.#pending = buf.length === 0 ? [] : [buf];
    this.#pendingBytes = buf.length;
  }

  #onFrame(type: string, id: number, payload: Buffer): void {
    if (type === 'H') {
      this.#hello(payload);
      return;
    }
    const live = this.#live.get(id);
    if (live === undefined) return; // closed by the agent meanwhile
    const stream = payload[0] === 2 ? 2 : 1;
    if (type === 'D') {
      // A view of the read buffer: what keeps output (BoundedOutput) copies the views it keeps, so a flood
      // is not copied once more here only to be dropped.
      if (live.open > 0) live.events.onData(stream, payload.subarray(1));
    } else if (type === 'E') {
      if (live.open === 0) return;
      live.open--;
      live.events.onEnd(stream);
      this.#forgetIfDone(id, live);
    } else if (type === 'X') {
      const value = payload.readUInt32LE(1);
      live.exited = true;
      if (payload[0] === 1) live.events.onExit(null, signalNames.get(value) ?? 'SIGKILL');
      else live.events.onExit(value, null);
      this.#forgetIfDone(id, live);
    }
  }

  #forgetIfDone(id: number, live: Live): void {
    if (!live.exited || live.open > 0) return;
    this.#live.delete(id);
    if (this.#live.size === 0) this.#setRef(false);
  }

  /** The helper's first frame: open its request and reply pipes through /proc. */
  #hello(payload: Buffer): void {
    const pid = this.#proc?.pid;
    if (this.#state !== 'starting' || pid === undefined || payload.length < 8) return;
    try {
      this.#requestFd = openSync(`/proc/${pid}/fd/${payload.readUInt32LE(0)}`, fsConstants.O_WRONLY);
      this.#replyFd = openSync(`/proc/${pid}/fd/${payload.readUInt32LE(4)}`, fsConstants.O_RDONLY);
    } catch (err) {
      this.#die(`cannot open the pipes of ${this.#path}: ${(err as Error).message}`);
      return;
    }
    this.#state = 'ready';
    if (this.#send('O', 0, [])) this.#log(`exec helper ${this.#path} ready (pid ${pid})`);
  }

  #die(reason: string): void {
    if (this.#state === 'dead') return;
    const wasStarted = this.#state !== 'idle';
    this.#state = 'dead';
    for (const fd of [this.#requestFd, this.#replyFd]) {
      if (fd < 0) continue;
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.#requestFd = this.#replyFd = -1;
    const proc = this.#proc;
    proc?.stdin?.destroy();
    proc?.stdout?.destroy();
    if (proc?.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    this.#setRef(false);
    if (wasStarted && reason !== 'closed') this.#log(`exec helper given up, children are spawned directly: ${reason}`);
    const lost = [...this.#live.values()];
    this.#live.clear();
    // Not from inside the caller's pause/resume/spawn: the loss is reported on the next tick.
    if (lost.length > 0) {
      process.nextTick(() => {
        for (const l of lost) l.events.onLost(reason);
      });
    }
  }

  /** An idle helper does not keep the agent's process alive; one with children does, like a direct child. */
  #setRef(ref: boolean): void {
    const proc = this.#proc;
    if (proc === undefined) return;
    for (const handle of [proc, proc.stdin, proc.stdout] as Array<{ ref?(): void; unref?(): void } | null>) {
      if (ref) handle?.ref?.();
      else handle?.unref?.();
    }
  }
}
