import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sandboxCgroups } from './leaks.ts';
import { removeTestNetwork, testNetwork } from './server.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

describe("the README's start command", () => {
  it('sets up, starts on a fresh data directory, and prints the URL and a working API key', async () => {
    const dataDir = await mkdtemp('/var/tmp/warren-start-');
    const net = testNetwork(Number(process.env.WARREN_TEST_SLOT ?? 0) + 5);
    const child = spawn('npm', ['start'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        WARREN_DATA_DIR: dataDir,
        WARREN_PORT: '0',
        WARREN_BRIDGE: net.bridge,
        WARREN_BRIDGE_CIDR: net.cidr,
        WARREN_NFT_TABLE: net.nftTable,
        WARREN_CGROUP_PARENT: net.cgroupParent,
        WARREN_API_KEY: '',
        WARREN_STOP_SANDBOXES_ON_EXIT: 'true',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    try {
      const printed = await new Promise<{ url: string; key: string }>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no URL and key within 10 min:\n${stdout}\n${stderr}`)), 600_000);
        child.once('exit', (code) => fail(new Error(`start exited ${code}:\n${stdout}\n${stderr}`)));
        child.stdout.on('data', (b: Buffer) => {
          stdout += b.toString();
          const url = /Warren is listening on (http:\/\/\S+)/.exec(stdout)?.[1];
          const key = /API key \(shown once, store it now\): (\S+)/.exec(stdout)?.[1];
          if (url && key) {
            clearTimeout(timer);
            ok({ url, key });
          }
        });
      });
      expect(stderr).toContain('Debian packages');
      expect(stderr).toContain('[template code-interpreter]');
      const health = await fetch(`${printed.url}/health`);
      expect(((await health.json()) as { status: string }).status).toBe('healthy');
      const templates = await fetch(`${printed.url}/v1/templates`, { headers: { 'x-api-key': printed.key } });
      expect(templates.status).toBe(200);
      const names = ((await templates.json()) as { data: Array<{ name: string }> }).data.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['base', 'code-interpreter']));
      expect((await fetch(`${printed.url}/v1/templates`, { headers: { 'x-api-key': 'not-the-key' } })).status).toBe(
        401,
      );
    } finally {
      const exited = new Promise((ok) => child.once('exit', ok));
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      await exited;
      // Its warm pool booted sandboxes in the background; the server deletes them on SIGTERM
      // (npm exits first, the server finishes its clean-up on its own).
      // A sandbox's directory is the last thing its teardown removes.
      const sandboxDirs = () => readdir(join(dataDir, 'sandboxes')).catch(() => [] as string[]);
      const deadline = Date.now() + 30_000;
      while (
        ((await sandboxCgroups(net.cgroupParent)).length > 0 || (await sandboxDirs()).length > 0) &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 200));
      }
      const left = await sandboxCgroups(net.cgroupParent);
      await removeTestNetwork(net);
      await rm(dataDir, { recursive: true, force: true });
      expect(left).toEqual([]);
    }
  });
});
