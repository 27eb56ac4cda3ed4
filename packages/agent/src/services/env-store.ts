import type { EnvMap } from '@warren/protocol';

/**
 * The sandbox's global environment (`/env`): applied to every later
 * execution and command, below the request's own env.
 */
export class EnvStore {
  #vars = new Map<string, string>();

  /** All variables, as a fresh object. */
  all(): EnvMap {
    return Object.fromEntries(this.#vars);
  }

  get size(): number {
    return this.#vars.size;
  }

  /** Replaces every variable with `vars`. */
  replace(vars: EnvMap): EnvMap {
    this.#vars = new Map(Object.entries(vars));
    return this.all();
  }

  /** Sets the given variables, keeping the others. */
  merge(vars: EnvMap): EnvMap {
    for (const [k, v] of Object.entries(vars)) this.#vars.set(k, v);
    return this.all();
  }

  /** Removes every variable. */
  clear(): void {
    this.#vars.clear();
  }
}
