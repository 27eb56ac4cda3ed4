import type { Command } from 'commander';
import type { SandboxInfo } from '../../client.ts';
import type { Context } from '../../context.ts';
import { describeError } from '../../errors.ts';
import { say } from '../../output.ts';

function register(parent: Command, ctx: Context, action: 'pause' | 'resume', description: string): void {
  parent
    .command(action)
    .description(description)
    .argument('<ids...>', 'sandbox ids')
    .action(async (ids: string[]) => {
      for (const id of ids) {
        try {
          const sb = await ctx
            .client()
            .request<SandboxInfo>('POST', `/v1/sandboxes/${encodeURIComponent(id)}/${action}`);
          say(`${sb.id} ${sb.status}`);
        } catch (err) {
          say(`${id}: ${describeError(err)}`);
          process.exitCode = 1;
        }
      }
    });
}

/** `pause` and `resume`. */
export function registerLifecycle(parent: Command, ctx: Context): void {
  register(parent, ctx, 'pause', 'freeze every process of sandboxes (memory and files stay; agent calls answer 409)');
  register(parent, ctx, 'resume', 'thaw paused sandboxes');
}
