import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CLIError } from '../errors.ts';
import { parsePort } from '../parse.ts';

/** The server's entry point in this repository. */
const SERVER_MAIN = fileURLToPath(new URL('../../../server/src/main.ts', import.meta.url));

interface ServerOptions {
  host?: string;
  port?: number;
  dataDir?: string;
  cacheDir?: string;
  publicUrl?: string;
  pool?: string;
  templates?: string;
  domain?: string;
  stopSandboxesOnExit?: boolean;
}

/** The WARREN_* variables a `warren server` invocation sets (flags win over the inherited environment). */
export function serverEnv(o: ServerOptions): Record<string, string> {
  const env: Record<string, string> = {};
  if (o.host !== undefined) env.WARREN_HOST = o.host;
  if (o.port !== undefined) env.WARREN_PORT = String(o.port);
  if (o.dataDir !== undefined) env.WARREN_DATA_DIR = o.dataDir;
  if (o.cacheDir !== undefined) env.WARREN_CACHE_DIR = o.cacheDir;
  if (o.publicUrl !== undefined) env.WARREN_PUBLIC_URL = o.publicUrl;
  if (o.pool !== undefined) env.WARREN_POOL = o.pool;
  if (o.templates !== undefined) env.WARREN_TEMPLATES = o.templates;
  if (o.domain !== undefined) env.WARREN_DOMAIN = o.domain;
  if (o.stopSandboxesOnExit) env.WARREN_STOP_SANDBOXES_ON_EXIT = 'true';
  return env;
}

/** `warren server`: runs the server in a child process with flags mapped to `WARREN_*` variables. */
export function registerServer(program: Command): void {
  program
    .command('server')
    .description(
      'run the Warren server in the foreground (as root); every WARREN_* variable of packages/server/src/config.ts also applies',
    )
    .option('--host <address>', 'address to listen on [env: WARREN_HOST] (default: 127.0.0.1)')
    .option('-p, --port <port>', 'port to listen on, 0 for any free one [env: WARREN_PORT] (default: 8080)', (v) =>
      parsePort(v, true),
    )
    .option('--data-dir <dir>', 'database and sandbox files [env: WARREN_DATA_DIR] (default: /var/lib/warren)')
    .option('--cache-dir <dir>', 'built templates and runtime [env: WARREN_CACHE_DIR] (default: /var/cache/warren)')
    .option('--public-url <url>', 'origin clients reach the server at [env: WARREN_PUBLIC_URL]')
    .option(
      '--pool <sizes>',
      'warm sandboxes per template: name=count,… or one number; 0 disables [env: WARREN_POOL] (default: base=2,code-interpreter=2)',
    )
    .option(
      '--templates <names>',
      'built-in templates to build at start [env: WARREN_TEMPLATES] (default: base,code-interpreter)',
    )
    .option('--domain <domain>', 'preview host domain, {port}-{id}.<domain> [env: WARREN_DOMAIN]')
    .option(
      '--stop-sandboxes-on-exit',
      'delete every sandbox when the server stops [env: WARREN_STOP_SANDBOXES_ON_EXIT]',
    )
    .addHelpText(
      'after',
      '\nThe server prints its URL ("listening on …") and, on first start without WARREN_API_KEY, a generated API key.\nSIGINT/SIGTERM stop it cleanly.',
    )
    .action(async (o: ServerOptions) => {
      const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), SERVER_MAIN], {
        env: { ...process.env, ...serverEnv(o) },
        stdio: 'inherit',
      });
      // The server handles SIGINT/SIGTERM itself; pass them on and wait for its clean-up.
      const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
      const onInt = forward('SIGINT');
      const onTerm = forward('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      try {
        const code = await new Promise<number>((resolve, reject) => {
          child.once('error', (err) => reject(new CLIError(`cannot start the server: ${err.message}`)));
          child.once('exit', (c, signal) => resolve(c ?? (signal ? 128 + (signalNumber(signal) ?? 0) : 1)));
        });
        process.exitCode = code;
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      }
    });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal];
}
