import type { Stats } from 'node:fs';
import {
  chmod,
  copyFile,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { posix } from 'node:path';
import {
  ErrorCode,
  type FileEntry,
  type FileListResponse,
  type FileReadResponse,
  type FileWriteParams,
  rfc3339,
  ServiceError,
} from '@warren/protocol';
import type { PathGuard } from './path-guard.ts';

/** Result of the mutating file routes. */
export interface FileOpResult {
  success: true;
  path: string;
  size?: number;
  message: string;
  timestamp: string;
}

/** An opened file ready to send; whoever sends it closes `handle`. */
export interface FileDownload {
  handle: FileHandle;
  size: number;
  name: string;
}

/** Turns a filesystem error into the matching agent error, never a 500. */
export function fsError(err: unknown, path: string): ServiceError {
  if (err instanceof ServiceError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return new ServiceError(ErrorCode.FILE_NOT_FOUND, `File not found: ${path}`, { path });
    case 'EEXIST':
      return new ServiceError(ErrorCode.FILE_ALREADY_EXISTS, `File already exists: ${path}`, { path });
    case 'EISDIR':
      return new ServiceError(ErrorCode.INVALID_PATH, `Path is a directory: ${path}`, { path });
    case 'ENOTDIR':
      return new ServiceError(ErrorCode.INVALID_PATH, `A parent of the path is not a directory: ${path}`, { path });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ServiceError(ErrorCode.PERMISSION_DENIED, `Permission denied: ${path}`, { path });
    case 'ELOOP':
      return new ServiceError(ErrorCode.PATH_NOT_ALLOWED, `Too many symbolic links: ${path}`, { path });
    default:
      return new ServiceError(
        ErrorCode.FILE_OPERATION_FAILED,
        `File operation failed on ${path}: ${(err as Error).message ?? String(err)}`,
        { path, details: code === undefined ? {} : { errno: code } },
      );
  }
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function decodeBase64(content: string): Buffer {
  const compact = content.replace(/\s+/g, '');
  if (!BASE64.test(compact) || compact.replace(/=+$/, '').length % 4 === 1) {
    throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid content: not valid base64');
  }
  return Buffer.from(compact, 'base64');
}

const typeChar = (st: Stats): string =>
  st.isDirectory()
    ? 'd'
    : st.isSymbolicLink()
      ? 'l'
      : st.isCharacterDevice()
        ? 'c'
        : st.isBlockDevice()
          ? 'b'
          : st.isFIFO()
            ? 'p'
            : st.isSocket()
              ? 's'
              : '-';

/** `ls -l` style permission string, e.g. `-rw-r--r--`. */
export function permissionString(st: Stats): string {
  const m = st.mode;
  const triplet = (shift: number, special: number, specialChar: string) => {
    const r = m & (4 << shift) ? 'r' : '-';
    const w = m & (2 << shift) ? 'w' : '-';
    const x = m & (1 << shift);
    const xc = m & special ? (x ? specialChar : specialChar.toUpperCase()) : x ? 'x' : '-';
    return r + w + xc;
  };
  return typeChar(st) + triplet(6, 0o4000, 's') + triplet(3, 0o2000, 's') + triplet(0, 0o1000, 't');
}

function entryOf(name: string, path: string, st: Stats, isSymlink: boolean): FileEntry {
  const modified = rfc3339(st.mtime);
  const isDir = st.isDirectory();
  return {
    name,
    path,
    size: isDir ? 0 : st.size,
    is_dir: isDir,
    is_directory: isDir,
    is_file: st.isFile(),
    is_symlink: isSymlink,
    modified,
    modified_time: modified,
    permissions: permissionString(st),
    mode: `0${(st.mode & 0o7777).toString(8).padStart(3, '0')}`,
  };
}

/** The files API (`/files/*`) over the allowed roots. */
export class FileService {
  readonly #guard: PathGuard;
  readonly #maxReadBytes: number;

  constructor(options: { guard: PathGuard; maxReadBytes: number }) {
    this.#guard = options.guard;
    this.#maxReadBytes = options.maxReadBytes;
  }

  /**
   * Reads a file as UTF-8 text.
   * @throws {ServiceError} `FILE_NOT_FOUND`, `PATH_NOT_ALLOWED`, `INVALID_PATH` (a directory), `PAYLOAD_TOO_LARGE`.
   */
  async read(raw: string): Promise<FileReadResponse> {
    const path = await this.#guard.resolve(raw);
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw fsError(Object.assign(new Error('is a directory'), { code: 'EISDIR' }), raw);
      if (st.size > this.#maxReadBytes) {
        throw new ServiceError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `File too large to read as text (${st.size} bytes): ${raw}; use /files/download`,
          { path: raw },
        );
      }
      const data = await readFile(path);
      return { content: data.toString('utf8'), path, size: data.length };
    } catch (err) {
      throw fsError(err, raw);
    }
  }

  /**
   * Opens a file for streaming as raw bytes.
   * @throws {ServiceError} `FILE_NOT_FOUND`, `PATH_NOT_ALLOWED`, `INVALID_PATH` (a directory).
   */
  async download(raw: string): Promise<FileDownload> {
    const path = await this.#guard.resolve(raw);
    let handle: FileHandle | undefined;
    try {
      handle = await open(path, 'r');
      const st = await handle.stat();
      if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      return { handle, size: st.size, name: posix.basename(path) };
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw fsError(err, raw);
    }
  }

  /**
   * Writes text or base64-decoded bytes, creating parent directories.
   * @throws {ServiceError} `FILE_ALREADY_EXISTS` when `overwrite` is false and the file exists;
   * `INVALID_REQUEST` for bad base64; `PATH_NOT_ALLOWED`.
   */
  async write(params: FileWriteParams): Promise<FileOpResult> {
    const path = await this.#guard.resolve(params.path);
    const data = params.encoding === 'base64' ? decodeBase64(params.content) : Buffer.from(params.content, 'utf8');
    try {
      await mkdir(posix.dirname(path), { recursive: true });
      await writeFile(path, data, { flag: params.overwrite ? 'w' : 'wx', mode: params.mode ?? 0o644 });
      if (params.mode !== undefined) await chmod(path, params.mode);
    } catch (err) {
      throw fsError(err, params.path);
    }
    return { success: true, path, size: data.length, message: 'File written', timestamp: rfc3339() };
  }

  /**
   * Lists a directory (default: `fallback`), entries sorted by name.
   * @throws {ServiceError} `DIRECTORY_NOT_FOUND`, `INVALID_PATH` (not a directory), `PATH_NOT_ALLOWED`.
   */
  async list(raw: string): Promise<FileListResponse> {
    const path = await this.#guard.resolve(raw);
    let names: string[];
    try {
      const st = await stat(path);
      if (!st.isDirectory()) {
        throw new ServiceError(ErrorCode.INVALID_PATH, `Not a directory: ${raw}`, { path: raw });
      }
      names = (await readdir(path)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ServiceError(ErrorCode.DIRECTORY_NOT_FOUND, `Directory not found: ${raw}`, { path: raw });
      }
      throw fsError(err, raw);
    }
    const files: FileEntry[] = [];
    for (const name of names) {
      const child = posix.join(path, name);
      const link = await lstat(child).catch(() => undefined);
      if (!link) continue; // removed while listing
      const target = link.isSymbolicLink() ? await stat(child).catch(() => link) : link;
      files.push(entryOf(name, child, target, link.isSymbolicLink()));
    }
    return { path, count: files.length, files };
  }

  /**
   * Whether a path exists (following symlinks).
   * @throws {ServiceError} `PATH_NOT_ALLOWED`.
   */
  async exists(raw: string): Promise<{ exists: boolean; path: string; is_dir: boolean }> {
    const path = await this.#guard.resolve(raw);
    const st = await stat(path).catch(() => undefined);
    return { exists: st !== undefined, path, is_dir: st?.isDirectory() ?? false };
  }

  /**
   * Removes a file or a directory tree (a symlink itself, not its target).
   * @throws {ServiceError} `FILE_NOT_FOUND`, `PATH_NOT_ALLOWED` (also for an allowed root itself).
   */
  async remove(raw: string): Promise<FileOpResult> {
    const path = await this.#guard.resolve(raw);
    if (await this.#guard.isRoot(path)) {
      throw new ServiceError(ErrorCode.PATH_NOT_ALLOWED, `Refusing to remove an allowed root: ${raw}`, { path: raw });
    }
    try {
      await lstat(path);
      await rm(path, { recursive: true, force: false });
    } catch (err) {
      throw fsError(err, raw);
    }
    return { success: true, path, message: 'Removed', timestamp: rfc3339() };
  }

  /**
   * Creates a directory and its parents; succeeds when it already exists.
   * @throws {ServiceError} `FILE_ALREADY_EXISTS` when a non-directory is in the way, `PATH_NOT_ALLOWED`.
   */
  async mkdir(raw: string): Promise<FileOpResult> {
    const path = await this.#guard.resolve(raw);
    try {
      await mkdir(path, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') {
        throw new ServiceError(ErrorCode.FILE_ALREADY_EXISTS, `Path exists and is not a directory: ${raw}`, {
          path: raw,
        });
      }
      throw fsError(err, raw);
    }
    return { success: true, path, message: 'Directory created', timestamp: rfc3339() };
  }

  /**
   * Stores an uploaded file at `raw`; when `raw` ends with `/` or names an
   * existing directory, the file keeps its own name inside it.
   * @throws {ServiceError} `PATH_NOT_ALLOWED`, `INVALID_REQUEST` (no usable file name).
   */
  async upload(raw: string, file: { name: string; tempPath: string }): Promise<FileOpResult> {
    let path = await this.#guard.resolve(raw);
    const intoDir = raw.endsWith('/') || (await stat(path).catch(() => undefined))?.isDirectory() === true;
    if (intoDir) {
      const name = posix.basename(file.name);
      if (name === '' || name === '.' || name === '..') {
        throw new ServiceError(ErrorCode.INVALID_REQUEST, 'Invalid file: the uploaded file has no usable name');
      }
      path = await this.#guard.resolve(posix.join(path, name));
    }
    let size: number;
    try {
      await mkdir(posix.dirname(path), { recursive: true });
      await chmod(file.tempPath, 0o644);
      // Same filesystem (the sandbox root) normally: a rename, no copy.
      await rename(file.tempPath, path).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EXDEV') throw err;
        await copyFile(file.tempPath, path);
      });
      size = (await stat(path)).size;
    } catch (err) {
      throw fsError(err, raw);
    }
    return { success: true, path, size, message: 'File uploaded', timestamp: rfc3339() };
  }
}
