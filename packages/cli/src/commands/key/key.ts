import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { describeError } from '../../errors.ts';
import { ago, out, outJSON, say, table } from '../../output.ts';
import { parseInteger } from '../../parse.ts';

/** An API key as `/v1/api-keys` shows it. */
interface KeyInfo {
  id: string;
  name: string;
  max_sandboxes: number | null;
  created_at: string;
  live_sandboxes: number;
  current: boolean;
  key?: string;
}

/** `warren key create|ls|rm`. */
export function registerKey(program: Command, ctx: Context): void {
  const key = program
    .command('key')
    .description('manage API keys (every key may manage keys; a key cannot revoke itself)');

  key
    .command('create')
    .description('create an API key and print its secret on stdout (shown once; the server keeps only a hash)')
    .argument('<name>', 'a name to recognise the key by')
    .option('--max-sandboxes <n>', "most sandboxes the key may hold at once (default: the server's limit)", (v) =>
      parseInteger(v, 1, 100_000),
    )
    .option('--json', 'print the key object (with its secret) as JSON')
    .action(async (name: string, o: { maxSandboxes?: number; json?: boolean }) => {
      const k = await ctx.client().request<KeyInfo>('POST', '/v1/api-keys', {
        body: { name, ...(o.maxSandboxes === undefined ? {} : { max_sandboxes: o.maxSandboxes }) },
      });
      if (o.json) {
        const { request_id: _r, ...rest } = k as KeyInfo & { request_id?: string };
        outJSON(rest);
        return;
      }
      say(`created API key ${k.id} (${k.name}); store the secret now, it is not shown again`);
      out(k.key ?? '');
    });

  key
    .command('ls')
    .alias('list')
    .description('list API keys (never their secrets)')
    .option('--json', 'print a JSON array')
    .action(async (o: { json?: boolean }) => {
      const { data } = await ctx.client().request<{ data: KeyInfo[] }>('GET', '/v1/api-keys');
      if (o.json) {
        outJSON(data);
        return;
      }
      out(
        table(
          ['id', 'name', 'sandboxes', 'limit', 'created', ''],
          data.map((k) => [
            k.id,
            k.name,
            k.live_sandboxes,
            k.max_sandboxes ?? 'default',
            ago(k.created_at),
            k.current ? '(this key)' : '',
          ]),
        ),
      );
    });

  key
    .command('rm')
    .alias('revoke')
    .description('revoke API keys: they stop working at once (a key holding sandboxes cannot be revoked)')
    .argument('<ids...>', 'key ids (key_…)')
    .action(async (ids: string[]) => {
      for (const id of ids) {
        try {
          await ctx.client().request('DELETE', `/v1/api-keys/${encodeURIComponent(id)}`);
          say(`revoked ${id}`);
        } catch (err) {
          say(`${id}: ${describeError(err)}`);
          process.exitCode = 1;
        }
      }
    });
}
