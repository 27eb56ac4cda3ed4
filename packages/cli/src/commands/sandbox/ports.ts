import type { Command } from 'commander';
import type { Context } from '../../context.ts';
import { out, outJSON, table } from '../../output.ts';

/** A TCP port listening inside a sandbox. */
export interface ListeningPort {
  port: number;
  address: string;
}

/** `0100007F` → `127.0.0.1`; IPv6 addresses are shown as `::` forms we care about only. */
function ipv4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
}

/**
 * Listening TCP ports from `/proc/net/tcp` and `/proc/net/tcp6` text
 * (state `0A`), one entry per port (IPv4 address preferred), sorted.
 */
export function parseListeningPorts(procNet: string): ListeningPort[] {
  const found = new Map<number, string>();
  for (const line of procNet.split('\n')) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    if (cols[3] !== '0A' || !local || !/^[0-9A-F]+:[0-9A-F]{4}$/i.test(local)) continue;
    const [addrHex, portHex] = local.split(':') as [string, string];
    const port = Number.parseInt(portHex, 16);
    const address =
      addrHex.length === 8
        ? ipv4(addrHex)
        : /^0+$/.test(addrHex)
          ? '::'
          : addrHex.toUpperCase() === '00000000000000000000000001000000'
            ? '::1'
            : 'ipv6';
    if (!found.has(port) || addrHex.length === 8) found.set(port, address);
  }
  return [...found.entries()].sort((a, b) => a[0] - b[0]).map(([port, address]) => ({ port, address }));
}

/** `warren sandbox ports <id> [--token] [--json]`: listening ports and their preview URLs. */
export function registerPorts(parent: Command, ctx: Context): void {
  parent
    .command('ports')
    .description('list TCP ports listening inside a sandbox, with their preview URLs')
    .argument('<id>', 'sandbox id')
    .option('--token', 'add browser URLs carrying a preview token (valid 1 h)')
    .option('--json', 'print a JSON array')
    .addHelpText(
      'after',
      '\nPreview URLs need the sandbox token or a preview token (--token); see docs/ARCHITECTURE.md, "port previews".',
    )
    .action(async (id: string, o: { token?: boolean; json?: boolean }) => {
      const client = ctx.client();
      const agent = await client.agent(id);
      const r = await agent.json<{ stdout: string; exit_code: number }>('POST', '/commands/run', {
        command: 'cat',
        args: ['/proc/net/tcp', '/proc/net/tcp6'],
        timeout: 10,
      });
      const ports = parseListeningPorts(r.stdout);
      const base = agent.sandbox.preview_url ?? `${agent.sandbox.public_host}/sandboxes/${id}/ports/`;
      const rows: Array<ListeningPort & { url: string; browser_url?: string }> = [];
      for (const p of ports) {
        const row: ListeningPort & { url: string; browser_url?: string } = { ...p, url: `${base}${p.port}/` };
        if (o.token) {
          const t = await client.request<{ url: string }>(
            'POST',
            `/v1/sandboxes/${encodeURIComponent(id)}/preview-token`,
            {
              body: { port: p.port, ttl_seconds: 3600 },
            },
          );
          row.browser_url = t.url;
        }
        rows.push(row);
      }
      if (o.json) {
        outJSON(rows);
        return;
      }
      const headers = o.token ? ['port', 'address', 'url', 'browser url'] : ['port', 'address', 'url'];
      out(
        table(
          headers,
          rows.map((r) => [r.port, r.address, r.url, ...(o.token ? [r.browser_url] : [])]),
        ),
      );
    });
}
