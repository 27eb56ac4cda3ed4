import type { Command } from 'commander';
import { call, type GlobalOptions } from '../client.ts';

interface Page {
  data: Array<{ id: string; status: string; template_name: string | null; created_at: string }>;
  has_more: boolean;
  next_cursor: string | null;
}

export function registerList(program: Command, globals: () => GlobalOptions): void {
  program
    .command('ls')
    .description('list sandboxes')
    .option('--status <status>', 'only sandboxes in this status')
    .action(async (o: { status?: string }) => {
      let cursor: string | null = null;
      do {
        const q = new URLSearchParams({
          limit: '100',
          ...(o.status ? { status: o.status } : {}),
          ...(cursor ? { cursor } : {}),
        });
        const page: Page = await call<Page>(globals(), 'GET', `/v1/sandboxes?${q}`);
        for (const s of page.data)
          process.stdout.write(`${s.id}\t${s.status}\t${s.template_name ?? '-'}\t${s.created_at}\n`);
        cursor = page.has_more ? page.next_cursor : null;
      } while (cursor);
    });
}
