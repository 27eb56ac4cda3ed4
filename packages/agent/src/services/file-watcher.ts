import { type FSWatcher, watch } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { FileChangeEvent } from '@warren/protocol';

/** One change under a watched tree. */
export interface FileChange {
  event: FileChangeEvent;
  path: string;
  isDir: boolean;
  /** For `renamed`: where the entry was before. */
  oldPath?: string;
}

/** Options of {@link TreeWatcher}. */
export interface TreeWatcherOptions {
  /** Directories watched at most (one inotify watch each). @default 2048 */
  maxDirs?: number;
  /** Entries whose inode is remembered to recognise renames. @default 20000 */
  maxTrackedEntries?: number;
  /** Events waiting to be examined before further ones are dropped. @default 10000 */
  maxQueuedEvents?: number;
  /** How long a vanished entry waits for its inode to reappear (a rename) before it counts as deleted. @default 50 */
  renameWindowMs?: number;
  /** Problems that do not stop the watch (a directory that could not be watched, dropped events). */
  onWarning?: (message: string) => void;
}

/**
 * Watches a directory tree with one inotify watch per directory (Node's
 * `recursive: true` polls every file on Linux). Reports created, modified,
 * deleted and renamed entries; a rename is recognised when an entry vanishes
 * and one with the same inode appears within `renameWindowMs`. Directories
 * created later are watched too, and their contents reported as created.
 * Symbolic links are never followed, so the watch stays inside the tree.
 */
export class TreeWatcher {
  readonly #root: string;
  readonly #onChange: (change: FileChange) => void;
  readonly #maxDirs: number;
  readonly #maxTracked: number;
  readonly #maxQueued: number;
  readonly #renameWindowMs: number;
  readonly #warn: (message: string) => void;
  readonly #watchers = new Map<string, FSWatcher>();
  /** Directory → entry name → inode. */
  readonly #inodes = new Map<string, Map<string, number>>();
  #tracked = 0;
  /** Inode → a vanished entry waiting to be paired with a reappearance. */
  readonly #vanished = new Map<number, { path: string; isDir: boolean; timer: NodeJS.Timeout }>();
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #dropped = 0;
  #dirLimitWarned = false;
  #closed = false;

  constructor(root: string, onChange: (change: FileChange) => void, options: TreeWatcherOptions = {}) {
    this.#root = root;
    this.#onChange = onChange;
    this.#maxDirs = options.maxDirs ?? 2048;
    this.#maxTracked = options.maxTrackedEntries ?? 20_000;
    this.#maxQueued = options.maxQueuedEvents ?? 10_000;
    this.#renameWindowMs = options.renameWindowMs ?? 50;
    this.#warn = options.onWarning ?? (() => undefined);
  }

  /** Number of directories being watched. */
  get watchedDirs(): number {
    return this.#watchers.size;
  }

  /**
   * Starts watching every directory of the tree.
   * @throws when the root itself cannot be watched (missing, not a directory).
   */
  async start(): Promise<void> {
    const st = await lstat(this.#root);
    if (!st.isDirectory()) throw Object.assign(new Error(`not a directory: ${this.#root}`), { code: 'ENOTDIR' });
    this.#watchDir(this.#root, true);
    await this.#scan(this.#root, false);
  }

  /** Stops every watch; no event is reported afterwards. */
  close(): void {
    this.#closed = true;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    for (const v of this.#vanished.values()) clearTimeout(v.timer);
    this.#vanished.clear();
  }

  #watchDir(dir: string, required = false): boolean {
    if (this.#closed || this.#watchers.has(dir)) return true;
    if (this.#watchers.size >= this.#maxDirs) {
      if (!this.#dirLimitWarned) {
        this.#dirLimitWarned = true;
        this.#warn(`watching at most ${this.#maxDirs} directories; changes deeper in ${dir} are not reported`);
      }
      return false;
    }
    try {
      const watcher = watch(dir, { persistent: false }, (eventType, filename) => {
        if (typeof filename !== 'string' || filename === '') return;
        this.#enqueue(dir, filename, eventType);
      });
      watcher.on('error', () => this.#unwatch(dir));
      this.#watchers.set(dir, watcher);
      this.#inodes.set(dir, this.#inodes.get(dir) ?? new Map());
      return true;
    } catch (err) {
      if (required) throw err;
      this.#warn(`cannot watch ${dir}: ${(err as Error).message}`);
      return false;
    }
  }

  /** Stops watching `dir` and every directory below it. */
  #unwatch(dir: string): void {
    for (const [path, watcher] of this.#watchers) {
      if (path === dir || path.startsWith(`${dir}${sep}`)) {
        watcher.close();
        this.#watchers.delete(path);
        this.#tracked -= this.#inodes.get(path)?.size ?? 0;
        this.#inodes.delete(path);
      }
    }
  }

  /** Watches the directories below `dir`; with `report`, every entry found counts as created. */
  async #scan(dir: string, report: boolean): Promise<void> {
    const pending = [dir];
    while (pending.length > 0 && !this.#closed) {
      const current = pending.shift() as string;
      const entries = await readdir(current, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        const path = join(current, entry.name);
        const isDir = entry.isDirectory();
        if (this.#tracked < this.#maxTracked) {
          const st = await lstat(path).catch(() => undefined);
          if (st) this.#remember(current, entry.name, st.ino);
        }
        if (report) this.#onChange({ event: 'created', path, isDir });
        if (isDir && this.#watchDir(path)) pending.push(path);
      }
    }
  }

  #remember(dir: string, name: string, ino: number): void {
    const names = this.#inodes.get(dir);
    if (!names) return;
    if (!names.has(name)) {
      if (this.#tracked >= this.#maxTracked) return;
      this.#tracked++;
    }
    names.set(name, ino);
  }

  #forget(dir: string, name: string): number | undefined {
    const names = this.#inodes.get(dir);
    const ino = names?.get(name);
    if (ino !== undefined) {
      names?.delete(name);
      this.#tracked--;
    }
    return ino;
  }

  #enqueue(dir: string, name: string, eventType: string): void {
    if (this.#closed) return;
    if (this.#queued >= this.#maxQueued) {
      if (this.#dropped++ === 0) this.#warn('too many changes at once; some were not reported');
      return;
    }
    this.#queued++;
    this.#queue = this.#queue
      .then(() => this.#examine(dir, name, eventType))
      .catch(() => undefined)
      .finally(() => {
        this.#queued--;
        if (this.#queued === 0) this.#dropped = 0;
      });
  }

  async #examine(dir: string, name: string, eventType: string): Promise<void> {
    if (this.#closed || !this.#watchers.has(dir)) return;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (this.#closed) return;
    if (st === undefined) {
      if (eventType !== 'rename') return;
      const ino = this.#forget(dir, name);
      const wasDir = this.#watchers.has(path);
      if (wasDir) this.#unwatch(path);
      if (ino === undefined) {
        this.#onChange({ event: 'deleted', path, isDir: wasDir });
        return;
      }
      const previous = this.#vanished.get(ino);
      if (previous) {
        clearTimeout(previous.timer);
        this.#onChange({ event: 'deleted', path: previous.path, isDir: previous.isDir });
      }
      const timer = setTimeout(() => {
        this.#vanished.delete(ino);
        if (!this.#closed) this.#onChange({ event: 'deleted', path, isDir: wasDir });
      }, this.#renameWindowMs);
      this.#vanished.set(ino, { path, isDir: wasDir, timer });
      return;
    }

    const isDir = st.isDirectory();
    const known = this.#inodes.get(dir)?.get(name);
    this.#remember(dir, name, st.ino);
    if (eventType !== 'rename') {
      this.#onChange({ event: 'modified', path, isDir });
      return;
    }
    const moved = this.#vanished.get(st.ino);
    if (moved) {
      clearTimeout(moved.timer);
      this.#vanished.delete(st.ino);
      this.#onChange({ event: 'renamed', path, isDir, oldPath: moved.path });
      if (isDir) {
        // A directory moved within the tree: its watches moved with it under new names.
        this.#unwatch(moved.path);
        if (this.#watchDir(path)) await this.#scan(path, false);
      }
      return;
    }
    if (known === st.ino) return; // an event for an entry already reported as it is
    this.#onChange({ event: known === undefined ? 'created' : 'modified', path, isDir });
    if (isDir && known === undefined && this.#watchDir(path)) await this.#scan(path, true);
  }
}

/** `path` re-expressed under `displayRoot` instead of `realRoot`. */
export function displayPath(path: string, realRoot: string, displayRoot: string): string {
  const rel = relative(realRoot, path);
  return rel === '' ? displayRoot : join(displayRoot, rel);
}
