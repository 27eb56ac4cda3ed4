import { CommanderError } from 'commander';
import { CLIError, describeError } from './errors.ts';
import { buildProgram } from './program.ts';

// A closed pipe (`warren sandbox ls | head`) ends output quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

const { program, ctx } = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander printed the message or the help already.
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`error: ${describeError(err)}\n`);
    let debug = false;
    try {
      debug = ctx.debug();
    } catch {
      // options not parsed
    }
    if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof CLIError ? err.exitCode : 1;
  }
}
