import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);
const ctx = inject('warren');
const root = join(import.meta.dirname, '..', '..');

/** Runs one example as a user would (`tsx examples/<name>.ts`) against the suite server; fails on a non-zero exit. */
async function example(name: string, outputDir: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', join(root, 'examples', `${name}.ts`)], {
    cwd: root,
    env: {
      ...process.env,
      WARREN_URL: ctx.baseURL,
      WARREN_API_KEY: ctx.apiKey,
      EXAMPLE_OUTPUT_DIR: outputDir,
      ...env,
    },
    timeout: 150_000,
    maxBuffer: 4 * 1024 * 1024,
  });
  return stdout;
}

describe('examples/ run to completion against a real server', () => {
  let out: string;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'warren-examples-'));
  });

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('quickstart', async () => {
    const stdout = await example('quickstart', out);
    expect(stdout).toMatch(/^sandbox sb\w+ is running$/m);
    expect(stdout).toMatch(/^python 3\.\d+\.\d+ says 42$/m);
    expect(stdout).toContain('last expression: 42');
    expect(stdout).toContain('exit code 3');
    expect(stdout).toContain('quickstart: done');
  });

  it('data-analysis saves the plot locally', async () => {
    const stdout = await example('data-analysis', out);
    expect(stdout).toContain('best region: west');
    const png = await readFile(join(out, 'sales-plot.png'));
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.length).toBeGreaterThan(1000);
  });

  it('web-app answers on its preview URL', async () => {
    const stdout = await example('web-app', out);
    expect(stdout).toMatch(
      /preview URL: http:\/\/127\.0\.0\.1:\d+\/sandboxes\/sb\w+\/ports\/8000\/\?warren_preview_token=/,
    );
    expect(stdout).toContain('"hello":"from the sandbox"');
    expect(stdout).toContain('server stopped (killed: true)');
  });

  it('agent-loop runs the scripted model code, recovers from its error, and answers', async () => {
    const stdout = await example('agent-loop', out);
    expect(stdout).toContain('turn 1: ran "len(primes)" -> 46');
    expect(stdout).toMatch(/turn 2: .* -> error: SyntaxError/);
    expect(stdout).toContain('-> 129');
    expect(stdout).toContain('answer after 3 tool calls');
  });

  it('file-transfer streams a file up and its compressed copy down', async () => {
    const stdout = await example('file-transfer', out, { EXAMPLE_SIZE_MIB: '40' });
    expect(stdout).toMatch(/uploaded \d+ bytes to \/workspace\/events\.log/);
    expect(stdout).toContain('round trip intact: true');
    const gz = await readFile(join(out, 'events.log.gz'));
    expect(gz.subarray(0, 2).toString('hex')).toBe('1f8b');
  });
});
