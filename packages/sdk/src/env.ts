import { envResponseSchema } from '@warren/protocol';
import { z } from 'zod';
import { requestOptions } from './client.ts';
import type { AgentLink } from './internal/agent.ts';
import type { RequestOptions } from './internal/http.ts';

const clearedSchema = z.looseObject({});

/**
 * The sandbox's global environment variables: applied to every later
 * `runCode`, command and terminal (a call's own `envs` override them).
 */
export class Env {
  readonly #agent: AgentLink;

  /** @internal */
  constructor(agent: AgentLink) {
    this.#agent = agent;
  }

  /** Every variable set through this API. */
  async getAll(options: RequestOptions = {}): Promise<Record<string, string>> {
    const r = await this.#agent.http.json(
      { method: 'GET', path: '/env', ...requestOptions(options) },
      envResponseSchema,
    );
    return r.env_vars;
  }

  /** One variable, or `undefined` when it is not set. */
  async get(name: string, options: RequestOptions = {}): Promise<string | undefined> {
    return (await this.getAll(options))[name];
  }

  /** Sets one variable, keeping the others. */
  async set(name: string, value: string, options: RequestOptions = {}): Promise<void> {
    await this.update({ [name]: value }, options);
  }

  /** Sets several variables, keeping the others. @returns the full set afterwards. */
  async update(vars: Record<string, string>, options: RequestOptions = {}): Promise<Record<string, string>> {
    const r = await this.#agent.http.json(
      {
        method: 'PATCH',
        path: '/env',
        json: { env_vars: vars, merge: true },
        idempotent: true,
        ...requestOptions(options),
      },
      envResponseSchema,
    );
    return r.env_vars;
  }

  /** Replaces every variable with `vars`. @returns the full set afterwards. */
  async setAll(vars: Record<string, string>, options: RequestOptions = {}): Promise<Record<string, string>> {
    const r = await this.#agent.http.json(
      { method: 'PUT', path: '/env', json: { env_vars: vars }, ...requestOptions(options) },
      envResponseSchema,
    );
    return r.env_vars;
  }

  /** Removes one variable. */
  async delete(name: string, options: RequestOptions = {}): Promise<void> {
    const all = await this.getAll(options);
    if (!(name in all)) return;
    delete all[name];
    await this.setAll(all, options);
  }

  /** Removes every variable set through this API. */
  async clear(options: RequestOptions = {}): Promise<void> {
    await this.#agent.http.json({ method: 'DELETE', path: '/env', ...requestOptions(options) }, clearedSchema);
  }
}
