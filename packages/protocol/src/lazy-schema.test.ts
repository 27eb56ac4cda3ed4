import { inspect, types } from 'node:util';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as protocol from './index.ts';
import { lazySchema } from './lazy-schema.ts';

const build = () =>
  z
    .object({ name: z.string().min(1), size: z.number().int().optional() })
    .transform((o) => ({ ...o, kind: 'file' as const }));

/** A lazy schema and how many times it was built. */
function counted() {
  const state = { builds: 0 };
  const schema = lazySchema(() => {
    state.builds++;
    return build();
  });
  return { schema, state };
}

describe('lazySchema', () => {
  it('builds the schema on first use, once', () => {
    const { schema, state } = counted();
    expect(state.builds).toBe(0);
    expect(schema.parse({ name: 'a' })).toEqual({ name: 'a', kind: 'file' });
    expect(schema.safeParse({ name: '' }).success).toBe(false);
    expect(state.builds).toBe(1);
  });

  it('parses and fails exactly like the schema it builds', () => {
    const { schema } = counted();
    for (const input of [{ name: 'a', size: 3 }, { name: '' }, { size: 1.5 }, null, 'x']) {
      expect(schema.safeParse(input)).toEqual(build().safeParse(input));
    }
  });

  it('answers instanceof, prototype and reflection like the built schema', () => {
    const lazy = lazySchema(() => z.object({ a: z.string() }));
    const eager = z.object({ a: z.string() });
    expect(lazy).toBeInstanceOf(z.ZodObject);
    expect(lazy).not.toBeInstanceOf(z.ZodString);
    expect(Object.getPrototypeOf(lazy)).toBe(Object.getPrototypeOf(eager));
    expect('_zod' in lazy).toBe(true);
    // zod defines `_zod` non-configurable, which a proxy may only report when its target mirrors it.
    expect(Object.getOwnPropertyDescriptor(lazy, '_zod')?.value).toBe(lazy._zod);
    expect(Object.keys(lazy)).toEqual(Object.keys(eager));
    expect(inspect(lazy)).toBe(inspect(eager));
    expect(lazy.shape.a.parse('x')).toBe('x');
  });

  it('composes into other schemas and derives new ones', () => {
    const item = lazySchema(() => z.object({ id: z.string() }));
    const list = z.object({ items: z.array(item), first: item.optional() });
    expect(list.parse({ items: [{ id: 'a' }], first: { id: 'b' } })).toEqual({
      items: [{ id: 'a' }],
      first: { id: 'b' },
    });
    expect(list.safeParse({ items: [{ id: 1 }] }).error?.issues[0]?.path).toEqual(['items', 0, 'id']);
    expect(item.extend({ n: z.number() }).parse({ id: 'a', n: 1 })).toEqual({ id: 'a', n: 1 });
    const union = z.discriminatedUnion('type', [
      lazySchema(() => z.object({ type: z.literal('a'), a: z.string() })),
      lazySchema(() => z.object({ type: z.literal('b') })),
    ]);
    expect(union.parse({ type: 'a', a: 'x' })).toEqual({ type: 'a', a: 'x' });
    expect(z.toJSONSchema(list)).toEqual(
      z.toJSONSchema(
        z.object({ items: z.array(z.object({ id: z.string() })), first: z.object({ id: z.string() }).optional() }),
      ),
    );
  });

  it('refuses to be made non-extensible', () => {
    expect(() => Object.freeze(lazySchema(build))).toThrow(TypeError);
  });

  it('stands in for every schema the protocol exports, so none is built at import', () => {
    const eager = Object.entries(protocol)
      .filter(([name, value]) => name.endsWith('Schema') && typeof value !== 'function' && !types.isProxy(value))
      .map(([name]) => name);
    expect(eager).toEqual([]);
  });
});
