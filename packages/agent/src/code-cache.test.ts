import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadWithCodeCache, writeCodeCache } from './code-cache.ts';

// A wrapped CommonJS module (as build.mjs writes agent.cjs) that reports what it was given, through a global.
const MODULE = `(function (exports, require, module, __filename, __dirname) {
const { basename } = require('node:path');
globalThis.codeCacheTest = { file: basename(__filename), dir: __dirname, double: (n) => n * 2, self: module.exports === exports };
});`;

/**
 * Loads `file` in a fresh node process and answers the cache outcome and `double(5)`: within one process
 * V8 answers a source it compiled before from memory and never looks at the cache.
 */
async function loadInChild(file: string, cacheFile: string): Promise<{ cache: string; ten: number }> {
  const codeCache = fileURLToPath(new URL('./code-cache.ts', import.meta.url));
  const script = `
    const { loadWithCodeCache } = await import(${JSON.stringify(codeCache)});
    const { cache } = loadWithCodeCache(${JSON.stringify(file)}, ${JSON.stringify(cacheFile)});
    console.log(JSON.stringify({ cache, ten: globalThis.codeCacheTest.double(5) }));`;
  const { stdout } = await promisify(execFile)(process.execPath, [
    '--import',
    'tsx',
    '--input-type=module',
    '-e',
    script,
  ]);
  return JSON.parse(stdout) as { cache: string; ten: number };
}

type Report = { file: string; dir: string; double: (n: number) => number; self: boolean };
const report = () => (globalThis as { codeCacheTest?: Report }).codeCacheTest;

let work: string;
let file: string;
let cacheFile: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'warren-code-cache-'));
  file = join(work, 'agent.cjs');
  cacheFile = `${file}.cache`;
  await writeFile(file, MODULE);
  delete (globalThis as { codeCacheTest?: Report }).codeCacheTest;
});

afterEach(async () => {
  delete (globalThis as { codeCacheTest?: Report }).codeCacheTest;
  await rm(work, { recursive: true, force: true });
});

describe('loadWithCodeCache', () => {
  it('runs a wrapped CommonJS file with require, module, __filename and __dirname when there is no cache', () => {
    expect(loadWithCodeCache(file, cacheFile).cache).toBe('missing');
    expect(report()).toMatchObject({ file: 'agent.cjs', dir: work, self: true });
    expect(report()?.double(21)).toBe(42);
  });

  it('compiles from a cache it recorded', async () => {
    const loaded = loadWithCodeCache(file);
    report()?.double(1);
    expect(writeCodeCache(loaded, cacheFile)).toBeGreaterThan(0);
    expect(await loadInChild(file, cacheFile)).toEqual({ cache: 'accepted', ten: 10 });
  });

  it('rejects a corrupt cache and still runs the file', async () => {
    writeCodeCache(loadWithCodeCache(file), cacheFile);
    const data = await readFile(cacheFile);
    for (let i = 32; i < data.length; i += 7) data[i] = (data[i] ?? 0) ^ 0x5a;
    await writeFile(cacheFile, data);
    expect(await loadInChild(file, cacheFile)).toEqual({ cache: 'rejected', ten: 10 });
  });

  it('rejects the cache of another source, even one of the same length', async () => {
    writeCodeCache(loadWithCodeCache(file), cacheFile);
    // Same length: V8 alone would accept the cache and run the old code.
    await writeFile(file, MODULE.replace('n * 2', 'n + n'));
    expect(await loadInChild(file, cacheFile)).toEqual({ cache: 'rejected', ten: 10 });
  });

  it('hands V8 only intact data for this source, and still runs the file when V8 refuses it', async () => {
    const notV8 = Buffer.from('not a V8 code cache at all, but with the right digest');
    const { createHash } = await import('node:crypto');
    const digest = createHash('sha256')
      .update(await readFile(file))
      .update(notV8)
      .digest();
    await writeFile(cacheFile, Buffer.concat([digest, notV8]));
    expect(await loadInChild(file, cacheFile)).toEqual({ cache: 'rejected', ten: 10 });
  });

  it('rejects an empty cache file and still runs the file', async () => {
    await writeFile(cacheFile, '');
    expect(await loadInChild(file, cacheFile)).toEqual({ cache: 'rejected', ten: 10 });
  });
});
