import { readFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { sh } from './host.ts';

/** What the numbers were measured on: CPU, memory, kernel, disk, tool versions, and the load when asked. */
export async function machineInfo(dataDir: string): Promise<Record<string, string | number>> {
  const os = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const crun = (await sh(['crun', '--version']).catch(() => '')).split('\n')[0] ?? '';
  const df = (await sh(['df', '-T', dataDir]).catch(() => '')).split('\n')[1]?.split(/\s+/) ?? [];
  const python = (await sh(['python3', '--version']).catch(() => '')).trim();
  const commit = (await sh(['git', 'rev-parse', '--short', 'HEAD']).catch(() => 'unknown')).trim();
  const dirty = (await sh(['git', 'status', '--porcelain', '--untracked-files=no']).catch(() => '')).trim() !== '';
  return {
    cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    os: /^PRETTY_NAME="?([^"\n]*)"?/m.exec(os)?.[1] ?? 'unknown',
    kernel: release(),
    'warren commit': `${commit}${dirty ? ' (working tree has uncommitted changes)' : ''}`,
    node: process.version,
    crun,
    python,
    'data disk': df.length > 1 ? `${df[0]} (${df[1]})` : 'unknown',
    'load average at start (1/5/15 min)': loadavg()
      .map((x) => x.toFixed(2))
      .join(' / '),
  };
}

/** Load average now, for the report's end. */
export function loadNow(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');
}
