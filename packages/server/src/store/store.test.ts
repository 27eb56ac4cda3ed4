import { describe, expect, it } from 'vitest';
import { openDatabase } from './db.ts';
import { POOL_KEY_ID, Store } from './store.ts';

function fixture() {
  const store = new Store(openDatabase(':memory:'));
  store.insertApiKey({ id: 'k1', keyHash: 'h1', name: 'one', maxSandboxes: null, createdAt: 0 });
  const t = store.upsertTemplate({
    name: 'base',
    displayName: 'Base',
    description: '',
    category: 'general',
    language: 'python',
    status: 'active',
    isPublic: true,
    rootfsDir: '/x',
    contentHash: 'h',
    resources: { vcpu: 1, memoryMiB: 512, diskMiB: 1024, pidsLimit: 64 },
    env: {},
    workdir: '/workspace',
    features: [],
  });
  const insert = (id: string, apiKeyId = 'k1', status: 'creating' | 'pooled' = 'creating', maxSandboxes = 100) =>
    store.insertSandbox(
      {
        id,
        apiKeyId,
        templateId: t.id,
        internetAccess: true,
        region: null,
        envVars: {},
        metadata: {},
        timeoutSeconds: null,
        expiresAt: null,
        createdAt: Date.now(),
      },
      { maxAddressIndex: 5, maxSandboxes },
      status,
    );
  return { store, t, insert };
}

describe('Store', () => {
  it('hands out the lowest free address slot and reuses freed ones', () => {
    const { store, insert } = fixture();
    const a = insert('a');
    const b = insert('b');
    const c = insert('c');
    expect([a, b, c].map((r) => (r.ok ? r.sandbox.addressIndex : -1))).toEqual([1, 2, 3]);
    store.transition('b', ['creating'], 'deleted');
    const d = insert('d');
    expect(d.ok && d.sandbox.addressIndex).toBe(2);
    store.transition('a', ['creating'], 'error');
    const e = insert('e');
    expect(e.ok && e.sandbox.addressIndex).toBe(1);
  });

  it('fails when addresses run out', () => {
    const { insert } = fixture();
    for (let i = 0; i < 5; i++) expect(insert(`s${i}`).ok).toBe(true);
    expect(() => insert('one-too-many')).toThrow(/no free sandbox address/);
  });

  it('enforces the per-key limit without counting failed, deleted or pooled sandboxes', () => {
    const { store, insert } = fixture();
    expect(insert('a', 'k1', 'creating', 2).ok).toBe(true);
    expect(insert('p', POOL_KEY_ID, 'pooled', 2).ok).toBe(true);
    expect(insert('b', 'k1', 'creating', 2).ok).toBe(true);
    const refused = insert('c', 'k1', 'creating', 2);
    expect(refused).toEqual({ ok: false, current: 2 });
    store.transition('a', ['creating'], 'error');
    expect(insert('c', 'k1', 'creating', 2).ok).toBe(true);
  });

  it('transitions only from the given states', () => {
    const { store, insert } = fixture();
    insert('a');
    expect(store.transition('a', ['running'], 'paused')).toBe(false);
    expect(store.transition('a', ['creating'], 'running')).toBe(true);
    expect(store.getSandbox('a')?.startedAt).not.toBeNull();
    expect(store.transition('a', ['creating'], 'running')).toBe(false);
  });

  it('claims each pooled sandbox once, and only booted ones', () => {
    const { store, t, insert } = fixture();
    insert('p1', POOL_KEY_ID, 'pooled');
    insert('p2', POOL_KEY_ID, 'creating'); // still booting: not claimable
    const claim = {
      apiKeyId: 'k1',
      internetAccess: false,
      region: null,
      envVars: { A: '1' },
      metadata: { team: 'x' },
      timeoutSeconds: 60,
      expiresAt: 123,
      createdAt: 5,
    };
    const first = store.claimPooled(t.id, claim);
    expect(first?.id).toBe('p1');
    expect(first?.status).toBe('creating');
    expect(first?.apiKeyId).toBe('k1');
    expect(first?.envVars).toEqual({ A: '1' });
    expect(first?.metadata).toEqual({ team: 'x' });
    expect(store.claimPooled(t.id, claim)).toBeUndefined();
    expect(store.countPool(t.id)).toBe(1);
  });

  it('finds expired sandboxes, never pooled or deleted ones', () => {
    const { store, insert } = fixture();
    insert('a');
    insert('b');
    store.setTimeout('a', 1, 1000);
    store.setTimeout('b', 1, 1000);
    store.transition('b', ['creating'], 'deleted');
    expect(store.expiredSandboxes(2000).map((r) => r.id)).toEqual(['a']);
    expect(store.expiredSandboxes(500)).toEqual([]);
  });

  it('lists a key’s sandboxes newest first, by pages', () => {
    const { store, insert } = fixture();
    for (const id of ['a', 'b', 'c']) insert(id);
    const page1 = store.listSandboxes({ apiKeyId: 'k1', limit: 2 });
    expect(page1.map((r) => r.id)).toEqual(['c', 'b']);
    const page2 = store.listSandboxes({ apiKeyId: 'k1', limit: 2, beforeSeq: page1[1]!.seq });
    expect(page2.map((r) => r.id)).toEqual(['a']);
  });
});
