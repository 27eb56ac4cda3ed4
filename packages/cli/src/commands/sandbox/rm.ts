import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { describeError } from '../../errors.ts';
import { say } from '../../output.ts';

/** `warren sandbox rm <ids...> | --all`: deletes sandboxes; one failure does not stop the others. */
export function registerRemove(parent: Command, ctx: Context): void {
  parent
    .command('rm')
    .alias('kill')
    .description('delete sandboxes (every process ends, every file is gone)')
    .argument('[ids...]', 'sandbox ids')
    .option('--all', 'delete every sandbox of the API key')
    .action(async (ids: string[], o: { all?: boolean }) => {
      const client = ctx.client();
      if (o.all && ids.length > 0) throw new Error('give sandbox ids or --all, not both');
      if (o.all) for await (const sb of client.sandboxes()) ids.push(sb.id);
      else if (ids.length === 0) throw new Error('which sandbox? give at least one id (or --all)');
      const results = await Promise.allSettled(
        ids.map((id) => client.request('DELETE', `/v1/sandboxes/${encodeURIComponent(id)}`)),
      );
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') say(`deleted ${ids[i]}`);
        else {
          say(`${ids[i]}: ${describeError(r.reason)}`);
          process.exitCode = 1;
        }
      });
    });
}
