import { describe, expect, inject, it } from 'vitest';
import { cliEnv, warren } from './cli.ts';

const ctx = inject('warren');

interface Key {
  id: string;
  name: string;
  max_sandboxes: number | null;
  live_sandboxes: number;
  current: boolean;
}

const list = async (env = cliEnv()) => {
  const r = await warren(['key', 'ls', '--json'], { env });
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Key[];
};

describe('warren key (real binary, real server)', () => {
  it('create prints a working secret once; ls shows the key without it; rm revokes it', async () => {
    const name = `cli-e2e-${process.pid}`;
    const created = await warren(['key', 'create', name, '--max-sandboxes', '1']);
    expect(created.code).toBe(0);
    const secret = created.stdout.trim();
    expect(secret).toMatch(/^wrn_live_[A-Za-z0-9_-]{20,}$/);
    expect(created.stderr).toMatch(/not shown again/);

    const keys = await list();
    const mine = keys.find((k) => k.name === name);
    expect(mine).toMatchObject({ max_sandboxes: 1, live_sandboxes: 0, current: false });
    expect(JSON.stringify(keys)).not.toContain(secret);
    const table = await warren(['key', 'ls']);
    expect(table.stdout).toMatch(new RegExp(`^${mine!.id}\\s+${name}\\s+0\\s+1\\s`, 'm'));

    // The new key authenticates (the CLI and the API agree), and sees itself as current.
    const asNew = cliEnv({ WARREN_API_KEY: secret });
    expect((await list(asNew)).find((k) => k.current)?.id).toBe(mine!.id);
    expect((await warren(['sandbox', 'ls', '--json'], { env: asNew })).stdout.trim()).toBe('[]');

    // A key cannot revoke itself.
    const self = await warren(['key', 'rm', mine!.id], { env: asNew });
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(/cannot revoke itself; use another key \(FORBIDDEN/);

    // Its limit holds, and a key holding a sandbox cannot be revoked until it is deleted.
    const sb = await warren(['sandbox', 'create', '-t', 'base'], { env: asNew });
    expect(sb.code).toBe(0);
    const sbId = sb.stdout.trim();
    try {
      const second = await warren(['sandbox', 'create', '-t', 'base'], { env: asNew });
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/RESOURCE_LIMIT_ERROR/);
      const busy = await warren(['key', 'rm', mine!.id]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/holds 1 sandbox.*\(CONFLICT/);
    } finally {
      expect((await warren(['sandbox', 'rm', sbId], { env: asNew })).code).toBe(0);
    }

    const revoked = await warren(['key', 'rm', mine!.id]);
    expect(revoked.code).toBe(0);
    expect(revoked.stderr).toContain(`revoked ${mine!.id}`);
    expect((await list()).map((k) => k.id)).not.toContain(mine!.id);
    const refused = await warren(['sandbox', 'ls'], { env: asNew });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/INVALID_TOKEN/);
    // The API agrees: the secret no longer authenticates.
    const direct = await fetch(`${ctx.baseURL}/v1/sandboxes`, { headers: { 'x-api-key': secret } });
    expect(direct.status).toBe(401);

    const again = await warren(['key', 'rm', mine!.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/RESOURCE_NOT_FOUND/);
  });

  it('sandbox rm --all deletes every sandbox of the key in use, and only those', async () => {
    const made = await warren(['key', 'create', `cli-e2e-all-${process.pid}`]);
    expect(made.code).toBe(0);
    const asOther = cliEnv({ WARREN_API_KEY: made.stdout.trim() });
    const mine = await warren(['sandbox', 'create', '-t', 'base']);
    expect(mine.code).toBe(0);
    const keep = mine.stdout.trim();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await warren(['sandbox', 'create', '-t', 'base'], { env: asOther });
        expect(r.code).toBe(0);
        ids.push(r.stdout.trim());
      }
      // Each key sees only its own sandboxes.
      const theirs = JSON.parse((await warren(['sandbox', 'ls', '--json'], { env: asOther })).stdout) as Array<{
        id: string;
      }>;
      expect(theirs.map((s) => s.id).sort()).toEqual([...ids].sort());
      const all = await warren(['sandbox', 'rm', '--all'], { env: asOther });
      expect(all.code).toBe(0);
      for (const id of ids) expect(all.stderr).toContain(`deleted ${id}`);
      expect((await warren(['sandbox', 'ls', '--json'], { env: asOther })).stdout.trim()).toBe('[]');
      const info = await warren(['sandbox', 'info', keep, '--json']);
      expect(JSON.parse(info.stdout).status).toBe('running');
      const id = (await list()).find((k) => k.name === `cli-e2e-all-${process.pid}`)?.id as string;
      expect((await warren(['key', 'rm', id])).code).toBe(0);
    } finally {
      await warren(['sandbox', 'rm', keep]);
    }
  });

  it('validates arguments before calling the server', async () => {
    const bad = await warren(['key', 'create', 'x', '--max-sandboxes', 'many']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a whole number/);
  });
});
