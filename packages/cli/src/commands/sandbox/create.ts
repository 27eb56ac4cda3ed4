import type { Command } from 'commander';
import type { SandboxInfo } from '../../client.ts';
import type { Context } from '../../context.ts';
import { out, outJSON, say } from '../../output.ts';
import { formatDuration, parseDurationSeconds, parseKeyValue } from '../../parse.ts';
import { Progress } from '../../progress.ts';

/** `warren sandbox create`: prints the new sandbox's id (or `--json` object) on stdout. */
export function registerCreate(parent: Command, ctx: Context): void {
  parent
    .command('create')
    .description('create a sandbox and print its id on stdout')
    .option('-t, --template <name>', 'template name or id', 'code-interpreter')
    .option('--timeout <duration>', 'delete the sandbox after this long (e.g. 30s, 5m, 1h)', parseDurationSeconds)
    .option('-e, --env <KEY=VALUE>', 'environment variable of every process in the sandbox (repeatable)', parseKeyValue)
    .option('--no-internet', 'no network egress from the sandbox')
    .option('--json', 'print the sandbox object as JSON')
    .action(
      async (o: {
        template: string;
        timeout?: number;
        env?: Record<string, string>;
        internet: boolean;
        json?: boolean;
      }) => {
        const started = Date.now();
        const byId = /^\d+$/.test(o.template);
        const progress = new Progress({ statusLines: false });
        progress.status(`creating a sandbox from ${o.template}`);
        let sb: SandboxInfo & { auth_token?: string };
        try {
          sb = await ctx.client().request<SandboxInfo & { auth_token?: string }>('POST', '/v1/sandboxes', {
            body: {
              ...(byId ? { template_id: o.template } : { template_name: o.template }),
              internet_access: o.internet,
              ...(o.timeout === undefined ? {} : { timeout_seconds: o.timeout }),
              ...(o.env === undefined ? {} : { env_vars: o.env }),
            },
          });
        } finally {
          progress.done();
        }
        say(
          `created ${sb.id} from ${sb.template_name ?? o.template} (${sb.status}) in ${formatDuration(Date.now() - started)}`,
        );
        if (o.json) {
          const { auth_token: _token, token_expires_at: _exp, ...rest } = sb;
          outJSON(rest);
        } else out(sb.id);
      },
    );
}
