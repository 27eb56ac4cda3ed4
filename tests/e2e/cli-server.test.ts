import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { WARREN_BIN, warren } from './cli.ts';
import { tracesOf } from './leaks.ts';
import { removeTestNetwork, testNetwork } from './server.ts';

const net = testNetwork(70 + Number(process.env.WARREN_TEST_SLOT ?? 0));
const KEY = 'wrn_cli_server_test_key_0123456789';

describe('warren server', () => {
  let child: ChildProcess | undefined;
  let dataDir: string | undefined;

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((ok) => child?.once('exit', ok));
      child.kill('SIGTERM');
      await exited;
    }
    await removeTestNetwork(net);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('starts the server with its options, serves the CLI, and stops it cleanly on SIGTERM', async () => {
    dataDir = await mkdtemp('/var/tmp/warren-cli-server-');
    child = spawn(
      process.execPath,
      [
        WARREN_BIN,
        'server',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--data-dir',
        dataDir,
        '--pool',
        '0',
        '--templates',
        'base',
        '--stop-sandboxes-on-exit',
      ],
      {
        env: {
          ...(process.env as Record<string, string>),
          // The port comes from the flag, not from this.
          WARREN_PORT: '1',
          WARREN_BRIDGE: net.bridge,
          WARREN_BRIDGE_CIDR: net.cidr,
          WARREN_NFT_TABLE: net.nftTable,
          WARREN_CGROUP_PARENT: net.cgroupParent,
          WARREN_API_KEY: KEY,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stderr?.on('data', (b: Buffer) => {
      output += b.toString();
    });
    const url = await new Promise<string>((ok, fail) => {
      child?.once('exit', (code) => fail(new Error(`warren server exited (${code}):\n${output}`)));
      child?.stdout?.on('data', (b: Buffer) => {
        output += b.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (m?.[1]) ok(m[1]);
      });
    });
    expect(url).not.toMatch(/:1$/);
    expect(url).not.toMatch(/:8080$/);

    const env = { PATH: process.env.PATH ?? '', XDG_CONFIG_HOME: dataDir, WARREN_URL: url, WARREN_API_KEY: KEY };
    const created = await warren(['sandbox', 'create', '-t', 'base'], { env });
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    const ran = await warren(['sandbox', 'exec', id, '--', 'echo served-by-cli-server'], { env });
    expect(ran.stdout).toBe('served-by-cli-server\n');
    const templates = JSON.parse((await warren(['template', 'ls', '--json'], { env })).stdout) as Array<{
      name: string;
    }>;
    expect(templates.map((t) => t.name)).toContain('base');

    const exited = new Promise<number | null>((ok) => child?.once('exit', (code) => ok(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // --stop-sandboxes-on-exit: the server deleted the sandbox on its way out.
    expect(await tracesOf(id, { dataDir, cgroupParent: net.cgroupParent, bridge: net.bridge })).toEqual([]);
  });
});
