import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findExecutable } from './executable.ts';

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'warren-executable-test-'));
  for (const dir of ['a', 'b', 'c', 'd']) await mkdir(join(base, dir));
  await writeFile(join(base, 'a/tool'), 'not executable\n'); // mode 0644
  await mkdir(join(base, 'b/tool')); // a directory of that name
  await writeFile(join(base, 'c/tool'), '#!/bin/sh\n');
  await chmod(join(base, 'c/tool'), 0o755);
  await writeFile(join(base, 'd/tool'), '#!/bin/sh\n');
  await chmod(join(base, 'd/tool'), 0o755);
  await writeFile(join(base, 'plain'), 'x');
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('findExecutable', () => {
  it('answers the first executable regular file on PATH, skipping missing dirs, files and directories', async () => {
    const path = ['', join(base, 'missing'), join(base, 'plain'), ...['a', 'b', 'c', 'd'].map((d) => join(base, d))];
    expect(await findExecutable('tool', path.join(':'))).toBe(join(base, 'c/tool'));
  });

  it('answers undefined when no PATH entry has it', async () => {
    expect(await findExecutable('tool', [join(base, 'a'), join(base, 'b')].join(':'))).toBeUndefined();
    expect(await findExecutable('tool', undefined)).toBeUndefined();
  });

  it('checks a name with a slash as a path', async () => {
    expect(await findExecutable(join(base, 'd/tool'), '')).toBe(join(base, 'd/tool'));
    expect(await findExecutable(join(base, 'a/tool'), '')).toBeUndefined();
    expect(await findExecutable(join(base, 'nope'), '')).toBeUndefined();
  });
});
