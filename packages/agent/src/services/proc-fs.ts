import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

/** Clock ticks per second of /proc times (USER_HZ, 100 on every Linux the agent runs on). */
export const CLOCK_TICKS_PER_SECOND = 100;
/** Bytes per page for /proc/<pid>/stat rss. */
const PAGE_SIZE = 4096;

/** The fields of /proc/<pid>/stat the agent uses. */
export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  utimeTicks: number;
  stimeTicks: number;
  threads: number;
  startTicks: number;
  rssBytes: number;
}

/** Parses the text of /proc/<pid>/stat; undefined when it is malformed. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  // Fields after the command name, starting with field 3 (state).
  const rest = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const field = (n: number) => Number(rest[n - 3]);
  const stat: ProcStat = {
    pid,
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '?',
    ppid: field(4),
    pgrp: field(5),
    utimeTicks: field(14),
    stimeTicks: field(15),
    threads: field(20),
    startTicks: field(22),
    rssBytes: field(24) * PAGE_SIZE,
  };
  return Number.isFinite(stat.pid) && Number.isFinite(stat.startTicks) ? stat : undefined;
}

function readStatSync(pid: number | string): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Start time of a process in clock ticks since boot; undefined when it is gone. */
export function processStartTicks(pid: number): number | undefined {
  return readStatSync(pid)?.startTicks;
}

function numericEntries(names: string[]): string[] {
  return names.filter((n) => /^\d+$/.test(n));
}

/**
 * Pids whose process group is `pgid` and that started no earlier than the
 * group's leader did (`leaderStartTicks`). Empty when the pid `pgid` now
 * belongs to a different, later process (the id was recycled).
 */
export function groupMembers(pgid: number, leaderStartTicks: number): number[] {
  const holder = readStatSync(pgid);
  if (holder !== undefined && holder.startTicks !== leaderStartTicks) return [];
  let names: string[];
  try {
    names = numericEntries(readdirSync('/proc'));
  } catch {
    return [];
  }
  const members: number[] = [];
  for (const name of names) {
    const stat = readStatSync(name);
    if (stat && stat.pgrp === pgid && stat.startTicks >= leaderStartTicks && stat.state !== 'Z') {
      members.push(stat.pid);
    }
  }
  return members;
}

/** A process of the sandbox, from /proc. */
export interface ProcessEntry extends ProcStat {
  uid: number;
  command: string;
}

/** Every process visible in /proc (the sandbox's pid namespace). */
export async function listProcEntries(): Promise<ProcessEntry[]> {
  const names = numericEntries(await readdir('/proc').catch(() => []));
  const entries = await Promise.all(
    names.map(async (name): Promise<ProcessEntry | undefined> => {
      try {
        const [statText, statusText, cmdline] = await Promise.all([
          readFile(`/proc/${name}/stat`, 'utf8'),
          readFile(`/proc/${name}/status`, 'utf8'),
          readFile(`/proc/${name}/cmdline`),
        ]);
        const stat = parseProcStat(statText);
        if (!stat) return undefined;
        const uid = Number(/^Uid:\s+(\d+)/m.exec(statusText)?.[1] ?? -1);
        const args = cmdline.toString('utf8').split('\0').filter(Boolean);
        return { ...stat, uid, command: args.length > 0 ? args.join(' ') : `[${stat.comm}]` };
      } catch {
        return undefined; // exited while being read
      }
    }),
  );
  return entries.filter((e): e is ProcessEntry => e !== undefined).sort((a, b) => a.pid - b.pid);
}

/** Seconds since boot, from /proc/uptime. */
export async function systemUptimeSeconds(): Promise<number> {
  const text = await readFile('/proc/uptime', 'utf8').catch(() => '0');
  return Number(text.split(/\s+/)[0]) || 0;
}

/** Boot time in ms since the epoch, from /proc/stat. */
export async function bootTimeMs(): Promise<number> {
  const text = await readFile('/proc/stat', 'utf8').catch(() => '');
  const btime = Number(/^btime\s+(\d+)/m.exec(text)?.[1]);
  return Number.isFinite(btime) ? btime * 1000 : Date.now();
}

let passwdCache: { text: string; names: Map<number, string> } | undefined;

/** User names by uid from /etc/passwd (re-read when it changes). */
export async function userNames(): Promise<Map<number, string>> {
  const text = await readFile('/etc/passwd', 'utf8').catch(() => '');
  if (passwdCache?.text === text) return passwdCache.names;
  const names = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid !== undefined && /^\d+$/.test(uid) && !names.has(Number(uid))) names.set(Number(uid), name);
  }
  passwdCache = { text, names };
  return names;
}
