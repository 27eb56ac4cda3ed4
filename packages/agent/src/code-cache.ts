import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** What became of the code cache when a script was compiled. */
export type CodeCacheOutcome = 'accepted' | 'rejected' | 'missing';

/** A wrapped CommonJS file compiled (with or without its code cache) and run. */
export interface LoadedScript {
  readonly cache: CodeCacheOutcome;
  /** The compiled script; `createCachedData()` on it records every function compiled so far. */
  readonly script: Script;
  /** The file's content, which a recorded cache is bound to. */
  readonly source: string;
}

/** A cache file is sha256(source ‖ V8 data) followed by the V8 data. */
const DIGEST_BYTES = 32;

function digest(source: string, data: Uint8Array): Buffer {
  return createHash('sha256').update(source).update(data).digest();
}

/**
 * The V8 data of `cacheFile` when it was recorded for exactly `source` and
 * arrived intact. V8 itself only checks its version, its flags and the
 * source's length, and a release build does not verify the data's checksum
 * (corrupt data can abort the process), hence the digest.
 */
function readCache(cacheFile: string, source: string): Buffer | 'missing' | 'rejected' {
  let file: Buffer;
  try {
    file = readFileSync(cacheFile);
  } catch {
    return 'missing';
  }
  if (file.length <= DIGEST_BYTES) return 'rejected';
  const data = file.subarray(DIGEST_BYTES);
  return timingSafeEqual(file.subarray(0, DIGEST_BYTES), digest(source, data)) ? data : 'rejected';
}

/**
 * Compiles `file`, a CommonJS module body wrapped the way Node wraps one
 * (`(function (exports, require, module, __filename, __dirname) { … })`, see
 * build.mjs; compiling the file as it is keeps no second copy of 800 KB of
 * source), with the V8 code cache in `cacheFile` (when given and present),
 * and runs it as a module. A cache recorded for
 * other content, damaged, or refused by V8 (another V8 version or other
 * flags) is ignored: the file is then compiled from source, which costs only
 * time.
 * @example
 * const { cache } = loadWithCodeCache('/.warren/agent/agent.cjs', '/.warren/agent/agent.cjs.cache');
 */
export function loadWithCodeCache(file: string, cacheFile?: string): LoadedScript {
  const source = readFileSync(file, 'utf8');
  const cached = cacheFile === undefined ? 'missing' : readCache(cacheFile, source);
  const script = new Script(source, {
    filename: file,
    ...(typeof cached === 'string' ? {} : { cachedData: cached }),
  });
  const cache: CodeCacheOutcome =
    typeof cached === 'string' ? cached : script.cachedDataRejected === true ? 'rejected' : 'accepted';
  const wrapper = script.runInThisContext() as (
    exports: object,
    require: NodeJS.Require,
    module: { exports: object },
    filename: string,
    dirname: string,
  ) => void;
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file));
  return { cache, script, source };
}

/**
 * Writes the code cache of a loaded script (every function compiled so far)
 * to `cacheFile`, bound to its source, through a temporary file so a reader
 * never sees half of it. Returns the file's size.
 */
export function writeCodeCache(loaded: LoadedScript, cacheFile: string): number {
  const data = loaded.script.createCachedData();
  const tmp = `${cacheFile}.tmp-${process.pid}`;
  const content = Buffer.concat([digest(loaded.source, data), data]);
  writeFileSync(tmp, content, { mode: 0o644 });
  renameSync(tmp, cacheFile);
  return content.length;
}
