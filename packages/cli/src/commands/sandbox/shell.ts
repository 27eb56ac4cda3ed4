import { StringDecoder } from 'node:string_decoder';
import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { CLIError } from '../../errors.ts';
import { parseFrame } from '../../frames.ts';
import { say } from '../../output.ts';

/** Exit status when the connection ends without the shell's exit status (like ssh). */
const LOST_CONNECTION_EXIT = 255;

/** `warren sandbox shell <id>`: an interactive terminal over the agent's `/terminal` WebSocket. */
export function registerShell(parent: Command, ctx: Context): void {
  parent
    .command('shell')
    .description(
      "open an interactive login shell in a sandbox (a real terminal: raw mode, resizes follow yours); exits with the shell's exit code",
    )
    .argument('<id>', 'sandbox id')
    .action(async (id: string) => {
      const agent = await ctx.client().agent(id);
      const ws = await agent.websocket('/terminal');
      const stdin = process.stdin;
      const stdout = process.stdout;
      const tty = stdin.isTTY === true;

      const resize = () => {
        if (stdout.isTTY && stdout.columns && stdout.rows) {
          ws.send(JSON.stringify({ type: 'resize', cols: stdout.columns, rows: stdout.rows }));
        }
      };
      resize();

      const decoder = new StringDecoder('utf8');
      const onInput = (chunk: Buffer) => {
        const data = decoder.write(chunk);
        if (data !== '') ws.send(JSON.stringify({ type: 'input', data }));
      };
      // Piped input: send it, and keep the session until the remote shell exits.
      const onEnd = () => {
        const rest = decoder.end();
        if (rest !== '') ws.send(JSON.stringify({ type: 'input', data: rest }));
      };

      if (tty) stdin.setRawMode(true);
      stdin.on('data', onInput);
      stdin.on('end', onEnd);
      stdin.resume();
      process.on('SIGWINCH', resize);

      try {
        const code = await new Promise<number>((resolve, reject) => {
          let exit: number | undefined;
          let error: string | undefined;
          ws.on('message', (data) => {
            const f = parseFrame(data);
            if (!f) return;
            if (f.type === 'output' && typeof f.data === 'string') {
              if (!stdout.write(f.data)) {
                ws.pause();
                stdout.once('drain', () => ws.resume());
              }
            } else if (f.type === 'exit') {
              exit = typeof f.code === 'number' ? f.code : LOST_CONNECTION_EXIT;
            } else if (f.type === 'error') {
              error = String(f.error ?? f.message ?? 'terminal error');
            }
          });
          ws.once('close', () => {
            if (exit !== undefined) resolve(exit);
            else
              reject(
                new CLIError(error ?? 'connection to the sandbox terminal lost', { exitCode: LOST_CONNECTION_EXIT }),
              );
          });
          ws.once('error', (err) =>
            reject(new CLIError(`terminal connection error: ${err.message}`, { exitCode: LOST_CONNECTION_EXIT })),
          );
        });
        process.exitCode = code;
      } finally {
        process.off('SIGWINCH', resize);
        stdin.off('data', onInput);
        stdin.off('end', onEnd);
        if (tty) stdin.setRawMode(false);
        stdin.pause();
        if (ws.readyState === ws.OPEN) ws.close();
      }
      if (ctx.debug()) say(`[debug] shell exited with ${process.exitCode}`);
    });
}
