import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { describeError } from '../../errors.ts';
import { out, outJSON, say, shortTime, table } from '../../output.ts';
import { registerTemplateBuild } from './build.ts';
import { followBuildLogs, resolveTemplate, type TemplateInfo } from './shared.ts';

/** `warren template build|ls|rm|logs`. */
export function registerTemplate(program: Command, ctx: Context): void {
  const template = program.command('template').alias('tpl').description('build and manage templates');

  registerTemplateBuild(template, ctx);

  template
    .command('ls')
    .alias('list')
    .description('list templates (built-in and built)')
    .option('--json', 'print a JSON array of template objects')
    .action(async (o: { json?: boolean }) => {
      const { data } = await ctx.client().request<{ data: TemplateInfo[] }>('GET', '/v1/templates');
      if (o.json) {
        outJSON(data);
        return;
      }
      out(
        table(
          ['id', 'name', 'status', 'public', 'updated', 'description'],
          data.map((t) => [
            t.id,
            t.name,
            t.status,
            t.is_public ? 'yes' : 'no',
            shortTime(t.updated_at ?? t.created_at),
            t.description,
          ]),
        ),
      );
    });

  template
    .command('rm')
    .description('delete templates you built (built-in templates cannot be deleted)')
    .argument('<templates...>', 'template names or ids')
    .action(async (refs: string[]) => {
      for (const ref of refs) {
        try {
          const t = await resolveTemplate(ctx.client(), ref);
          await ctx.client().request('DELETE', `/v1/templates/${encodeURIComponent(t.id)}`);
          say(`deleted template ${t.name} (${t.id})`);
        } catch (err) {
          say(`${ref}: ${describeError(err)}`);
          process.exitCode = 1;
        }
      }
    });

  template
    .command('logs')
    .description("print a template's latest build log")
    .argument('<template>', 'template name or id')
    .option('-f, --follow', 'keep printing until the build ends; exit 1 if it failed')
    .action(async (ref: string, o: { follow?: boolean }) => {
      const t = await resolveTemplate(ctx.client(), ref);
      const status = await followBuildLogs(ctx.client(), t.id, {
        follow: o.follow === true,
        onLog: (text) => process.stdout.write(text),
      });
      if (o.follow) {
        say(`build ${status}`);
        if (status === 'failed') process.exitCode = 1;
      }
    });
}
