import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { CLIError } from '../../errors.ts';
import { parseFrame } from '../../frames.ts';
import { out, say } from '../../output.ts';
import { parseDurationSeconds, parseKeyValue } from '../../parse.ts';

interface ExecOptions {
  env?: Record<string, string>;
  workdir?: string;
  timeout: number;
  background?: boolean;
}

/** `warren sandbox exec <id> <command...>`: streamed over `/commands/stream`; the CLI exits with the command's code. */
export function registerExec(parent: Command, ctx: Context): void {
  parent
    .command('exec')
    .description('run a command in a sandbox (bash -c "<command...>"), streaming its output; exits with its exit code')
    .argument('<id>', 'sandbox id')
    .argument('<command...>', 'command line; words are joined with spaces (options of exec go before the id)')
    .passThroughOptions()
    .option('-e, --env <KEY=VALUE>', 'environment variable for this command (repeatable)', parseKeyValue)
    .option('-w, --workdir <dir>', "working directory inside the sandbox (default: the template's, /workspace)")
    .option('--timeout <duration>', 'kill the command after this long (at most 1h)', parseDurationSeconds, 600)
    .option('--background', 'start it in the background and print its process id (see `warren sandbox logs`)')
    .addHelpText(
      'after',
      "\nExamples:\n  warren sandbox exec sb_123 ls -la /workspace\n  warren sandbox exec -e A=1 -w /tmp sb_123 'echo $A $(pwd)'\n  warren sandbox exec sb_123 -- -weird-name   (-- before a command that starts with a dash)",
    )
    .action(async (id: string, words: string[], o: ExecOptions) => {
      // Everything after the id is the command; a leading `--` only separates it.
      const command = words[0] === '--' ? words.slice(1) : words;
      if (command.length === 0) throw new CLIError('no command given');
      const agent = await ctx.client().agent(id);
      const body = {
        command: 'bash',
        args: ['-c', command.join(' ')],
        timeout: o.timeout,
        ...(o.workdir === undefined ? {} : { workdir: o.workdir }),
        ...(o.env === undefined ? {} : { env: o.env }),
      };
      if (o.background) {
        const r = await agent.json<{ process_id: string; pid?: number }>('POST', '/commands/background', body);
        say(`started ${r.process_id} in ${id}; follow it with: warren sandbox logs ${id} ${r.process_id} -f`);
        out(r.process_id);
        return;
      }
      const ws = await agent.websocket('/commands/stream');
      ws.send(JSON.stringify({ type: 'command', ...body }));
      const onSigint = () => {
        say('interrupted: ending the remote command');
        ws.close();
        process.exitCode = 130;
      };
      process.once('SIGINT', onSigint);
      try {
        const exitCode = await new Promise<number>((resolve, reject) => {
          let code: number | undefined;
          let error: string | undefined;
          ws.on('message', (data) => {
            const f = parseFrame(data);
            if (!f) return;
            if ((f.type === 'stdout' || f.type === 'stderr') && typeof f.data === 'string') {
              const stream = f.type === 'stdout' ? process.stdout : process.stderr;
              if (!stream.write(f.data)) {
                ws.pause();
                stream.once('drain', () => ws.resume());
              }
            } else if (f.type === 'result' && typeof f.exit_code === 'number') {
              code = f.exit_code;
            } else if (f.type === 'error') {
              error = `${String(f.error ?? 'error')}${f.code ? ` (${String(f.code)})` : ''}`;
            } else if (f.type === 'complete') {
              ws.close();
            }
          });
          ws.once('close', () => {
            if (error !== undefined) say(error);
            if (code !== undefined) resolve(code);
            else if (process.exitCode === 130) resolve(130);
            else reject(new CLIError(error ?? 'the connection closed before the command finished'));
          });
          ws.once('error', (err) => reject(new CLIError(`connection error: ${err.message}`)));
        });
        process.exitCode = exitCode;
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
