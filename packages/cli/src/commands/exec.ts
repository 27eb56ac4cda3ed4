import type { Command } from 'commander';
import { call, type GlobalOptions } from '../client.ts';
import { parseDuration } from '../parse.ts';

interface Sandbox {
  public_host: string;
}

export function registerExec(program: Command, globals: () => GlobalOptions): void {
  program
    .command('exec')
    .description('run a shell command in a sandbox; exits with its exit code')
    .argument('<id>', 'sandbox id')
    .argument('<command...>', 'command line (run with bash -c)')
    .option('--timeout <duration>', 'command timeout', '60s')
    .action(async (id: string, command: string[], o: { timeout: string }) => {
      const g = globals();
      const sb = await call<Sandbox>(g, 'GET', `/v1/sandboxes/${id}`);
      const { auth_token } = await call<{ auth_token: string }>(g, 'POST', `/v1/sandboxes/${id}/token/refresh`);
      const r = await call<{ stdout: string; stderr: string; exit_code: number }>(
        g,
        'POST',
        '/commands/run',
        { command: 'bash', args: ['-c', command.join(' ')], timeout: Math.ceil(parseDuration(o.timeout) / 1000) },
        { baseURL: sb.public_host, token: auth_token },
      );
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.exitCode = r.exit_code;
    });
}
