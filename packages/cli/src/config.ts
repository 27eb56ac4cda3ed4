import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';

/** Where the server is when nothing says otherwise. */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** What every verb that talks to a server needs. */
export interface ClientConfig {
  /** Server origin, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** API key; undefined when none is configured anywhere. */
  readonly apiKey: string | undefined;
  /** Where each value came from (`flag`, `env`, `file`, `default`), for `--debug` and errors. */
  readonly sources: Readonly<{ url: ConfigSource; apiKey: ConfigSource | 'none' }>;
}

/** Where a setting came from. */
export type ConfigSource = 'flag' | 'env' | 'file' | 'default';

/** The config file: `{ "url": "...", "apiKey": "..." }`. */
export const configFileSchema = z.strictObject({
  url: z.url({ protocol: /^https?$/ }).optional(),
  apiKey: z.string().min(1).optional(),
});

/** A validated config file. */
export type ConfigFile = z.infer<typeof configFileSchema>;

/**
 * The config file's path: `$WARREN_CONFIG`, else `$XDG_CONFIG_HOME/warren/config.json`,
 * else `~/.config/warren/config.json`.
 */
export function configFilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WARREN_CONFIG) return env.WARREN_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'warren', 'config.json');
}

/**
 * Reads and validates the config file. A missing file is an empty config
 * (unless the path was given explicitly).
 * @throws Error naming the file and the bad field.
 */
export function readConfigFile(path: string, options: { required: boolean }): { config: ConfigFile; warning?: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !options.required) return { config: {} };
    throw new Error(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = configFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(top level)';
    throw new Error(`config file ${path}: ${field}: ${issue?.message ?? 'invalid'}`);
  }
  // A key readable by other users of the machine deserves a warning.
  let warning: string | undefined;
  if (parsed.data.apiKey !== undefined) {
    try {
      if ((statSync(path).mode & 0o077) !== 0) {
        warning = `config file ${path} holds an API key and is readable by others (chmod 600 ${path})`;
      }
    } catch {
      // stat raced with a removal: nothing to warn about
    }
  }
  return warning === undefined ? { config: parsed.data } : { config: parsed.data, warning };
}

/**
 * Resolves the client config: flags, then `WARREN_URL` / `WARREN_API_KEY`,
 * then the config file, then the default URL. Empty values count as unset.
 */
export function resolveConfig(input: {
  flags: { url?: string | undefined; apiKey?: string | undefined };
  env: NodeJS.ProcessEnv;
  file: ConfigFile;
}): ClientConfig {
  const pick = <T>(flag: T | undefined, env: T | undefined, file: T | undefined) =>
    flag !== undefined && flag !== ''
      ? { value: flag, source: 'flag' as const }
      : env !== undefined && env !== ''
        ? { value: env, source: 'env' as const }
        : file !== undefined && file !== ''
          ? { value: file, source: 'file' as const }
          : undefined;
  const url = pick(input.flags.url, input.env.WARREN_URL, input.file.url) ?? {
    value: DEFAULT_URL,
    source: 'default' as const,
  };
  const apiKey = pick(input.flags.apiKey, input.env.WARREN_API_KEY, input.file.apiKey);
  let parsedURL: URL;
  try {
    parsedURL = new URL(url.value);
  } catch {
    throw new Error(`invalid server URL '${url.value}' (from ${url.source})`);
  }
  if (parsedURL.protocol !== 'http:' && parsedURL.protocol !== 'https:') {
    throw new Error(`server URL must be http(s): '${url.value}' (from ${url.source})`);
  }
  return Object.freeze({
    url: url.value.replace(/\/+$/, ''),
    apiKey: apiKey?.value,
    sources: Object.freeze({ url: url.source, apiKey: apiKey?.source ?? ('none' as const) }),
  });
}
