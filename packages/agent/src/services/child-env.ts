import { type EnvMap, reservedEnvPrefix } from '@warren/protocol';

/** Environment every child starts from, below the template's. */
export const BASE_ENV: Readonly<EnvMap> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
});

/**
 * The environment of a child process: base < template < global (`/env`) <
 * request. Built from scratch, so the agent's own variables never leak;
 * `WARREN_*` names are dropped whatever their source.
 */
export function buildChildEnv(layers: {
  template: Readonly<EnvMap>;
  global: Readonly<EnvMap>;
  request?: Readonly<EnvMap> | undefined;
}): EnvMap {
  const env: EnvMap = { ...BASE_ENV, ...layers.template, ...layers.global, ...(layers.request ?? {}) };
  for (const name of Object.keys(env)) if (name.startsWith(reservedEnvPrefix)) delete env[name];
  return env;
}
