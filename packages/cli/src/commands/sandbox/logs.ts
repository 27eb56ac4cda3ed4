import type { Command } from 'commander';
import type { AgentClient } from '../../client.ts';
import type { Context } from '../../context.ts';
import { ago, out, outJSON, table } from '../../output.ts';

/** A background process as the agent reports it (PROTOCOL §10). */
interface ProcessInfo {
  process_id: string;
  name: string | null;
  status: string;
  command: string | null;
  language?: string;
  exit_code: number | null;
  start_time: string;
  stdout: string;
  stderr: string;
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
}

const POLL_MS = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Prints a process's output from `printed` on; while it runs, only whole
 * lines (so a UTF-8 character or line is never split between polls).
 */
function emit(stream: NodeJS.WriteStream, text: string, printed: number, final: boolean): number {
  if (text.length <= printed) return printed;
  const end = final ? text.length : text.lastIndexOf('\n') + 1;
  if (end <= printed) return printed;
  stream.write(text.slice(printed, end));
  return end;
}

async function follow(agent: AgentClient, processId: string, followOn: boolean): Promise<ProcessInfo> {
  let outAt = 0;
  let errAt = 0;
  for (;;) {
    const p = await agent.json<ProcessInfo>('GET', `/execute/processes/${encodeURIComponent(processId)}`);
    const done = p.status !== 'running' && p.status !== 'queued';
    const final = done || !followOn;
    outAt = emit(process.stdout, p.stdout ?? '', outAt, final);
    errAt = emit(process.stderr, p.stderr ?? '', errAt, final);
    if (final) return p;
    await sleep(POLL_MS);
  }
}

/** `warren sandbox logs <id> [process] [-f]`: background processes and their output. */
export function registerLogs(parent: Command, ctx: Context): void {
  parent
    .command('logs')
    .description(
      "without a process id: list the sandbox's background processes; with one: print that process's stdout (to stdout) and stderr (to stderr)",
    )
    .argument('<id>', 'sandbox id')
    .argument('[process]', 'background process id (from `warren sandbox exec --background` or the list)')
    .option('-f, --follow', 'keep printing output until the process ends; then exit with its exit code')
    .option('--json', 'print JSON (the process list, or the process object)')
    .addHelpText(
      'after',
      '\nThe agent keeps the first 256 KiB of each stream of a background process, and the last 100\nfinished processes. Output of `warren sandbox exec` (foreground) is streamed, not kept.',
    )
    .action(async (id: string, processId: string | undefined, o: { follow?: boolean; json?: boolean }) => {
      const agent = await ctx.client().agent(id);
      if (processId === undefined) {
        const { processes } = await agent.json<{ processes: ProcessInfo[] }>('GET', '/execute/processes');
        if (o.json) {
          outJSON(processes);
          return;
        }
        out(
          table(
            ['process', 'status', 'exit', 'started', 'command'],
            processes.map((p) => [
              p.process_id,
              p.status,
              p.exit_code,
              ago(p.start_time),
              p.command ?? p.name ?? p.language,
            ]),
          ),
        );
        return;
      }
      if (o.json) {
        outJSON(await agent.json<ProcessInfo>('GET', `/execute/processes/${encodeURIComponent(processId)}`));
        return;
      }
      const p = await follow(agent, processId, o.follow === true);
      if (p.stdout_truncated || p.stderr_truncated) process.stderr.write('\n[output truncated by the agent]\n');
      if (o.follow && typeof p.exit_code === 'number') process.exitCode = p.exit_code;
    });
}
