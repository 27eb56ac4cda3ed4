import type { Command } from 'commander';
import { Client } from './client.ts';
import { type ClientConfig, configFilePath, readConfigFile, resolveConfig } from './config.ts';
import { say } from './output.ts';

/** The global options (`warren --url … --api-key … --config … --debug`). */
export interface GlobalFlags {
  url?: string;
  apiKey?: string;
  config?: string;
  debug?: boolean;
}

/** What every verb gets: the resolved config and a client, built on first use. */
export interface Context {
  /** The client config: flags > WARREN_* env > config file > defaults. */
  config(): ClientConfig;
  /** A control-plane client for the resolved config. */
  client(): Client;
  /** True with `--debug`. */
  debug(): boolean;
}

/** A context reading the root command's options when a verb first needs them. */
export function createContext(program: Command, env: NodeJS.ProcessEnv = process.env): Context {
  let config: ClientConfig | undefined;
  let client: Client | undefined;
  const flags = () => program.opts<GlobalFlags>();
  const ctx: Context = {
    config() {
      if (config) return config;
      const explicit = flags().config ?? env.WARREN_CONFIG;
      const path = flags().config ?? configFilePath(env);
      const { config: file, warning } = readConfigFile(path, { required: explicit !== undefined && explicit !== '' });
      if (warning) say(`warning: ${warning}`);
      config = resolveConfig({ flags: { url: flags().url, apiKey: flags().apiKey }, env, file });
      if (ctx.debug())
        say(`[debug] server ${config.url} (${config.sources.url}), API key from ${config.sources.apiKey}`);
      return config;
    },
    client() {
      client ??= new Client(ctx.config());
      return client;
    },
    debug: () => flags().debug === true,
  };
  return ctx;
}
