import { readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type CreatedSandbox, cp, createSandbox, deleteSandbox, py, sh } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');

/** Python that tries a TCP connect and prints `connected` or the error. */
const connectCode = (host: string, port: number) => `
import socket
s = socket.socket()
s.settimeout(2)
try:
    s.connect((${JSON.stringify(host)}, ${port}))
    print('connected')
except Exception as e:
    print('failed', type(e).__name__)
`;

const ownIPCode = (gateway: string) => `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((${JSON.stringify(gateway)}, 9))
print(s.getsockname()[0])
`;

describe('isolation of a real sandbox', () => {
  let a: CreatedSandbox;
  let b: CreatedSandbox;
  let offline: CreatedSandbox;
  const created: CreatedSandbox[] = [];

  beforeAll(async () => {
    [a, b, offline] = await Promise.all([
      createSandbox({ template_name: 'base' }),
      createSandbox({ template_name: 'base' }),
      createSandbox({ template_name: 'base', internet_access: false }),
    ]);
    created.push(a, b, offline);
  });

  afterAll(async () => {
    await Promise.all(created.map(deleteSandbox));
    for (const s of created) expect(await tracesAfterTeardown(s.id, ctx)).toEqual([]);
  });

  it('has its own hostname and pid namespace, and sees no host process', async () => {
    const r = await sh(
      a,
      'hostname; readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /proc | grep -c "^[0-9]"',
    );
    const [name, pidns, init, count] = r.stdout.trim().split('\n');
    expect(name).toBe(a.id);
    expect(name).not.toBe(hostname());
    expect(pidns).not.toBe(await readlink('/proc/self/ns/pid'));
    expect(init).toContain('warren-init');
    expect(Number(count)).toBeLessThan(20);
    const own = await sh(
      a,
      `test -e /proc/${process.pid}/cmdline && cat /proc/${process.pid}/cmdline | tr "\\0" " " || echo none`,
    );
    expect(own.stdout).not.toContain('vitest');
    const ps = await sh(a, 'ps -eo args');
    expect(ps.stdout).not.toMatch(/vitest|warren\/packages\/server|sshd|systemd/);
  });

  it('cannot see a marker file created on the host', async () => {
    const marker = `/tmp/warren-host-marker-${process.pid}`;
    await writeFile(marker, 'host secret');
    try {
      const r = await sh(a, `cat ${marker} 2>&1 || echo missing`);
      expect(r.stdout).toContain('missing');
      expect(r.stdout).not.toContain('host secret');
    } finally {
      await rm(marker, { force: true });
    }
  });

  it('runs root inside as an unprivileged uid on the host', async () => {
    const r = await sh(a, 'id -u; cat /proc/self/uid_map; echo x > /workspace/owned-by-root');
    const [uid, map] = r.stdout.trim().split('\n');
    expect(uid).toBe('0');
    expect(map?.trim().split(/\s+/)).toEqual(['0', '100000', '65536']);
    const st = await stat(`${ctx.dataDir}/sandboxes/${a.id}/upper/workspace/owned-by-root`);
    expect(st.uid).toBe(100000);
    expect(st.uid).not.toBe(0);
    // Privileged operations fail even for root inside.
    const mount = await sh(a, 'mount -t tmpfs none /mnt 2>&1; echo rc=$?');
    expect(mount.stdout).toMatch(/rc=[1-9]/);
  });

  it('kills a memory hog at the template limit while the server keeps serving', async () => {
    const limit = Number(
      await readFile(`/sys/fs/cgroup/memory/${ctx.cgroupParent}/${a.id}/memory.limit_in_bytes`, 'utf8'),
    );
    expect(limit).toBe(512 * 1024 * 1024);
    const hog = await py(
      a,
      `
chunks = []
while True:
    chunks.append(b'\x01' * (32 * 1024 * 1024))
    print(len(chunks) * 32, flush=True)
`,
      60,
    );
    expect(hog.success).toBe(false);
    expect(hog.exit_code).toBe(137);
    const reachedMiB = Number(hog.stdout.trim().split('\n').at(-1));
    expect(reachedMiB).toBeGreaterThanOrEqual(256);
    expect(reachedMiB).toBeLessThanOrEqual(512);
    const health = await fetch(`${ctx.baseURL}/health`);
    expect(health.status).toBe(200);
    expect((await sh(a, 'echo alive')).stdout).toBe('alive\n');
  });

  it('stops a fork bomb at the pids limit', async () => {
    const max = (await readFile(`/sys/fs/cgroup/pids/${ctx.cgroupParent}/${a.id}/pids.max`, 'utf8')).trim();
    expect(max).toBe('256');
    const r = await py(
      a,
      `
import os, signal, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print('blocked', n, e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
os.killpg(os.getpgrp(), signal.SIGKILL)
`,
      60,
    );
    const m = /blocked (\d+) (\d+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(256);
    expect(Number(m![2])).toBe(11); // EAGAIN
    const health = await fetch(`${ctx.baseURL}/health`);
    expect(health.status).toBe(200);
    expect((await sh(a, 'echo alive')).stdout).toBe('alive\n');
  });

  describe('network', () => {
    let listener: Server;
    let port: number;
    const gateway = ctx.gateway;

    beforeAll(async () => {
      listener = createServer((s) => {
        s.on('error', () => undefined); // the control client hangs up at once
        s.end('hello from the host\n');
      });
      await new Promise<void>((ok) => listener.listen(0, '0.0.0.0', ok));
      port = (listener.address() as { port: number }).port;
    });
    afterAll(() => new Promise<void>((ok) => listener.close(() => ok())));

    it('the host listener works from the host itself (control)', async () => {
      const { connect } = await import('node:net');
      const ok = await new Promise<boolean>((res) => {
        const s = connect(port, gateway, () => {
          s.destroy();
          res(true);
        });
        s.on('error', () => res(false));
      });
      expect(ok).toBe(true);
    });

    it('with internet_access false, host services on loopback and the bridge address are unreachable', async () => {
      expect((await py(offline, connectCode('127.0.0.1', port))).stdout).toMatch(/^failed/);
      expect((await py(offline, connectCode(gateway, port))).stdout).toMatch(/^failed/);
    });

    it('with internet_access true, host services are still unreachable', async () => {
      expect((await py(a, connectCode(gateway, port))).stdout).toMatch(/^failed/);
    });

    it('sandbox A cannot reach any port of sandbox B, nor its agent', async () => {
      const bIP = (await py(b, ownIPCode(gateway))).stdout.trim();
      expect(bIP.startsWith(ctx.gateway.replace(/\.0\.1$/, '.'))).toBe(true);
      await sh(b, 'setsid python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 < /dev/null & sleep 1');
      // Control: B reaches its own server on its bridge address.
      expect((await py(b, connectCode(bIP, 8000))).stdout).toBe('connected\n');
      expect((await py(a, connectCode(bIP, 8000))).stdout).toMatch(/^failed/);
      expect((await py(a, connectCode(bIP, 7777))).stdout).toMatch(/^failed/);
      const list = await cp('GET', '/v1/sandboxes');
      expect(list.status).toBe(200);
    });
  });
});
