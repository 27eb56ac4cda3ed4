import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { fields, out, outJSON } from '../../output.ts';

/** `warren sandbox info <id> [--json]`. */
export function registerInfo(parent: Command, ctx: Context): void {
  parent
    .command('info')
    .description('show one sandbox')
    .argument('<id>', 'sandbox id')
    .option('--json', 'print the sandbox object as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      const { auth_token: _t, token_expires_at: _e, request_id: _r, ...sb } = await ctx.client().sandbox(id);
      if (o.json) {
        outJSON(sb);
        return;
      }
      const r = sb.resources;
      out(
        fields([
          ['id', sb.id],
          ['status', sb.status],
          ['template', `${sb.template_name ?? '-'} (${sb.template_id ?? '-'})`],
          ['created', sb.created_at],
          ['expires', sb.expires_at ?? 'never'],
          ['internet', sb.internet_access === false ? 'no' : 'yes'],
          ['resources', r ? `${r.vcpu} vcpu, ${r.memory_mb} MiB memory, ${r.disk_mb} MiB disk` : '-'],
          ['agent URL', sb.public_host],
          ['preview URL', sb.preview_url ? `${sb.preview_url}<port>/` : '-'],
        ]),
      );
    });
}
