import type { Command } from 'commander';
import { call, type GlobalOptions } from '../client.ts';

export function registerTemplates(program: Command, globals: () => GlobalOptions): void {
  program
    .command('templates')
    .description('list templates')
    .action(async () => {
      const r = await call<{ data: Array<{ id: string; name: string; status: string; description: string }> }>(
        globals(),
        'GET',
        '/v1/templates',
      );
      for (const t of r.data) process.stdout.write(`${t.id}\t${t.name}\t${t.status}\t${t.description}\n`);
    });
}
