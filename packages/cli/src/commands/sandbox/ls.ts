import type { Command } from 'commander';
import type { SandboxInfo } from '../../client.ts';
import type { Context } from '../../context.ts';
import { ago, out, outJSON, table } from '../../output.ts';

const STATUSES = ['creating', 'running', 'paused', 'stopped', 'error'];

/** `warren sandbox ls [--status] [--json]`: every sandbox of the key, all pages. */
export function registerList(parent: Command, ctx: Context): void {
  parent
    .command('ls')
    .alias('list')
    .description("list the API key's sandboxes, newest first")
    .option('--status <status>', `only sandboxes in this status (${STATUSES.join(', ')})`)
    .option('--json', 'print a JSON array of sandbox objects')
    .action(async (o: { status?: string; json?: boolean }) => {
      if (o.status !== undefined && !STATUSES.includes(o.status)) {
        throw new Error(`invalid --status '${o.status}' (one of ${STATUSES.join(', ')})`);
      }
      const all: SandboxInfo[] = [];
      for await (const sb of ctx.client().sandboxes(o.status === undefined ? {} : { status: o.status })) all.push(sb);
      if (o.json) {
        outJSON(all);
        return;
      }
      out(
        table(
          ['id', 'status', 'template', 'created', 'expires'],
          all.map((s) => [s.id, s.status, s.template_name, ago(s.created_at), s.expires_at ?? 'never']),
        ),
      );
    });
}
