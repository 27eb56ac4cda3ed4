import type { Command } from 'commander';
import { call, type GlobalOptions } from '../client.ts';

export function registerRemove(program: Command, globals: () => GlobalOptions): void {
  program
    .command('rm')
    .description('delete sandboxes')
    .argument('<ids...>', 'sandbox ids')
    .action(async (ids: string[]) => {
      for (const id of ids) {
        await call(globals(), 'DELETE', `/v1/sandboxes/${id}`);
        process.stderr.write(`deleted ${id}\n`);
      }
    });
}
