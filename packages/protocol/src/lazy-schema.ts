import type { z } from 'zod';

/**
 * Node's `util.inspect.custom`. `inspect` shows a proxy's target without
 * running its traps, so the target carries this to show the schema instead.
 */
const inspectCustom = Symbol.for('nodejs.util.inspect.custom');

/**
 * A schema that `build` makes on first use, standing in for it everywhere:
 * every property read, method call, `in`, `Object.keys`, `instanceof` and
 * zod's own reads of `_zod` go to the built schema, and it composes into other
 * schemas like the schema itself. Its type is the built schema's type.
 *
 * Why: the in-sandbox agent imports this package, and building its sixty-odd
 * schemas at module load was most of the 16–19 ms a CPU profile of the agent's
 * start showed in evaluating it (3–4 ms with lazy schemas). The agent needs a
 * schema only when a request that uses it arrives, and never needs most of
 * them. Host, exec → listening, medians of 100 alternating runs: 101 → 95 ms
 * with the V8 code cache, 137 → 131 ms without. A schema's first use now pays
 * for building it (0.2–2 ms).
 *
 * The stand-in is a `Proxy` and so not `===` to the built schema: a schema made
 * from it (`.optional()`, `.extend()`, …) wraps the built schema, a schema
 * composed of it (`z.array(s)`) holds the stand-in, and `z.globalRegistry`
 * keys each one separately. It cannot be frozen or made non-extensible.
 * @example
 * export const killRequestSchema = lazySchema(() => z.object({ process_id: z.string().min(1) }));
 */
export function lazySchema<T extends z.ZodType>(build: () => T): T {
  let built: T | undefined;
  const schema = (): T => {
    built ??= build();
    return built;
  };
  // The target holds nothing of the schema but the non-configurable properties a proxy has to mirror
  // (see `mirror`); everything else is read from the built schema.
  const target: object = {};
  Object.defineProperty(target, inspectCustom, {
    configurable: true,
    value: (depth: number, options: object, inspect: (value: unknown, options: object) => string) =>
      inspect(schema(), { ...options, depth }),
  });
  /**
   * Copies `key` to the target when the built schema has it non-configurable (zod's `_zod` is):
   * a proxy may report a property as non-configurable only when its target has it so.
   */
  const mirror = (key: PropertyKey): PropertyDescriptor | undefined => {
    const desc = Reflect.getOwnPropertyDescriptor(schema(), key);
    if (desc?.configurable === false && !Object.hasOwn(target, key)) Object.defineProperty(target, key, desc);
    return desc;
  };
  return new Proxy(target, {
    // The built schema as receiver: zod's methods are prototype getters that bind to their receiver.
    get: (_, key) => Reflect.get(schema(), key),
    set: (_, key, value) => Reflect.set(schema(), key, value),
    has: (_, key) => Reflect.has(schema(), key),
    ownKeys: () => Reflect.ownKeys(schema()),
    getOwnPropertyDescriptor: (_, key) => mirror(key),
    defineProperty: (_, key, desc) => {
      if (!Reflect.defineProperty(schema(), key, desc)) return false;
      mirror(key);
      return true;
    },
    deleteProperty: (_, key) => Reflect.deleteProperty(schema(), key),
    getPrototypeOf: () => Reflect.getPrototypeOf(schema()),
    setPrototypeOf: (_, proto) => Reflect.setPrototypeOf(schema(), proto),
    // Refused (a TypeError): a non-extensible proxy would have to hold a copy of every property.
    preventExtensions: () => false,
  }) as T;
}
