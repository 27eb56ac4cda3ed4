import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The real agent, built into a private directory, started the way a sandbox starts it: `node boot.cjs`.
let work: string;
let dist: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'warren-boot-test-'));
  dist = join(work, 'dist');
  const build = fileURLToPath(new URL('../build.mjs', import.meta.url));
  await promisify(execFile)(process.execPath, [build, '--outdir', dist]);
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function agentEnv(name: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    WARREN_SANDBOX_ID: 'boot-test',
    WARREN_AGENT_TOKEN_KEY: '00',
    WARREN_AGENT_SOCKET: join(work, `${name}.sock`),
    WARREN_AGENT_WORKDIR: join(work, 'workspace'),
    WARREN_AGENT_FILE_ROOTS: work,
    // No python kernel from a test.
    WARREN_AGENT_KERNEL_BRIDGE: join(work, 'no-kernel-bridge.py'),
    ...extra,
  };
}

function health(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * Starts the agent through boot.cjs, waits for /health 200 (throws if it never comes), stops it; answers what
 * it wrote to stderr.
 */
async function bootOnce(name: string): Promise<string> {
  const env = agentEnv(name);
  const child: ChildProcess = spawn(process.execPath, [join(dist, 'boot.cjs')], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    for (let attempt = 0; (await health(env.WARREN_AGENT_SOCKET!)) !== 200; attempt++) {
      if (attempt > 3000 || child.exitCode !== null) throw new Error(`agent did not answer /health: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  return stderr;
}

describe('boot.cjs', () => {
  const cacheFile = () => join(dist, 'agent.cjs.cache');

  it('boots the agent without a code cache', async () => {
    await rm(cacheFile(), { force: true });
    expect(await bootOnce('no-cache')).not.toContain('code cache');
  });

  it('records the code cache once the agent answers /health, and boots with it', async () => {
    const env = agentEnv('record', { WARREN_AGENT_CODE_CACHE_RECORD: cacheFile() });
    const { stderr } = await promisify(execFile)(process.execPath, [join(dist, 'boot.cjs')], { env });
    expect(stderr).toMatch(/code cache recorded \(\d+ bytes\)/);
    expect((await stat(cacheFile())).size).toBeGreaterThan(100_000);
    expect(await bootOnce('cached')).not.toContain('rejected');
  });

  it('boots the agent when the code cache is corrupt, saying so', async () => {
    const data = await readFile(cacheFile());
    for (let i = 64; i < data.length; i += 4096) data[i] = (data[i] ?? 0) ^ 0xff;
    await writeFile(cacheFile(), data);
    expect(await bootOnce('corrupt')).toContain('code cache rejected');
  });
});
