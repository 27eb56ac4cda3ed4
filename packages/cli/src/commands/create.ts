import type { Command } from 'commander';
import { call, type GlobalOptions } from '../client.ts';
import { parseDuration } from '../parse.ts';

export function registerCreate(program: Command, globals: () => GlobalOptions): void {
  program
    .command('create')
    .description('create a sandbox and print its id')
    .option('-t, --template <name>', 'template name', 'code-interpreter')
    .option('--timeout <duration>', 'delete the sandbox after this long (e.g. 30s, 5m, 1h)')
    .option('--no-internet', 'no network egress')
    .action(async (o: { template: string; timeout?: string; internet: boolean }) => {
      const sb = await call<{ id: string; status: string }>(globals(), 'POST', '/v1/sandboxes', {
        template_name: o.template,
        internet_access: o.internet,
        ...(o.timeout ? { timeout_seconds: Math.ceil(parseDuration(o.timeout) / 1000) } : {}),
      });
      process.stderr.write(`created ${sb.id} (${sb.status})\n`);
      process.stdout.write(`${sb.id}\n`);
    });
}
