import { Command } from 'commander';
import { registerKey } from './commands/key/key.ts';
import { registerCopy } from './commands/sandbox/cp.ts';
import { registerCreate } from './commands/sandbox/create.ts';
import { registerExec } from './commands/sandbox/exec.ts';
import { registerInfo } from './commands/sandbox/info.ts';
import { registerLifecycle } from './commands/sandbox/lifecycle.ts';
import { registerLogs } from './commands/sandbox/logs.ts';
import { registerList } from './commands/sandbox/ls.ts';
import { registerPorts } from './commands/sandbox/ports.ts';
import { registerRemove } from './commands/sandbox/rm.ts';
import { registerShell } from './commands/sandbox/shell.ts';
import { registerServer } from './commands/server.ts';
import { registerTemplate } from './commands/template/template.ts';
import { type Context, createContext } from './context.ts';

/** The CLI's version (the package version). */
export const VERSION = '0.1.0';

const CONFIG_HELP = `
Configuration (first found wins):
  1. flags: --url, --api-key
  2. environment: WARREN_URL, WARREN_API_KEY
  3. config file: --config, else $WARREN_CONFIG, else $XDG_CONFIG_HOME/warren/config.json
     (default ~/.config/warren/config.json), JSON: { "url": "http://127.0.0.1:8080", "apiKey": "wrn_live_…" }
  4. default URL http://127.0.0.1:8080

Global options go before the command: warren --url http://host:8080 sandbox ls
Output: results (ids, tables, --json) go to stdout; messages and progress to stderr.
Errors print "message (code, request id)" and exit 1 (--debug adds the stack).`;

/**
 * Builds the `warren` command tree. Commander never calls `process.exit`:
 * errors and help surface as thrown `CommanderError`s for the caller.
 */
export function buildProgram(options: { env?: NodeJS.ProcessEnv } = {}): { program: Command; ctx: Context } {
  const program = new Command('warren')
    .description('Warren: self-hosted sandboxes from the command line')
    .version(VERSION, '-V, --version', 'print the CLI version')
    .option('--url <url>', 'server URL [env: WARREN_URL] (default: http://127.0.0.1:8080)')
    .option('--api-key <key>', 'API key [env: WARREN_API_KEY]')
    .option('--config <file>', 'config file [env: WARREN_CONFIG] (default: ~/.config/warren/config.json)')
    .option('--debug', 'print stack traces and where the config came from')
    .exitOverride()
    // Global options go before the verb; this lets `exec` hand everything after the sandbox id to the command.
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true })
    .addHelpText('after', CONFIG_HELP);
  const ctx = createContext(program, options.env);

  registerServer(program);

  const sandbox = program
    .command('sandbox')
    .alias('sb')
    .description('create, use and remove sandboxes')
    .enablePositionalOptions();
  registerCreate(sandbox, ctx);
  registerList(sandbox, ctx);
  registerInfo(sandbox, ctx);
  registerRemove(sandbox, ctx);
  registerLifecycle(sandbox, ctx);
  registerExec(sandbox, ctx);
  registerShell(sandbox, ctx);
  registerCopy(sandbox, ctx);
  registerLogs(sandbox, ctx);
  registerPorts(sandbox, ctx);

  registerTemplate(program, ctx);
  registerKey(program, ctx);
  return { program, ctx };
}
