import { Command } from 'commander';
import { CLIAPIError, type GlobalOptions } from './client.ts';
import { registerCreate } from './commands/create.ts';
import { registerExec } from './commands/exec.ts';
import { registerList } from './commands/list.ts';
import { registerRemove } from './commands/remove.ts';
import { registerTemplates } from './commands/templates.ts';

const program = new Command('warren')
  .description('Warren sandboxes from the command line')
  .option('--url <url>', 'server URL', process.env.WARREN_URL ?? 'http://127.0.0.1:8080')
  .option('--api-key <key>', 'API key (default: $WARREN_API_KEY)', process.env.WARREN_API_KEY)
  .option('--debug', 'show stack traces');

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
registerCreate(program, globals);
registerList(program, globals);
registerExec(program, globals);
registerRemove(program, globals);
registerTemplates(program, globals);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CLIAPIError) {
    process.stderr.write(`${err.message} (${err.code}${err.requestId ? `, ${err.requestId}` : ''})\n`);
  } else {
    process.stderr.write(`${(err as Error).message}\n`);
  }
  if (globals().debug) process.stderr.write(`${(err as Error).stack}\n`);
  process.exitCode = 1;
});
