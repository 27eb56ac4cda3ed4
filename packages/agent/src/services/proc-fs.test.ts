import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { groupMembers, parseProcStat, processStartTicks } from './proc-fs.ts';

describe('proc-fs', () => {
  it('parses /proc/<pid>/stat, command names with spaces and parentheses included', () => {
    const stat = parseProcStat(
      '42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 12345 1000000 250 18446744073709551615',
    );
    expect(stat).toMatchObject({
      pid: 42,
      comm: 'my (odd) cmd',
      state: 'S',
      ppid: 1,
      pgrp: 42,
      utimeTicks: 7,
      stimeTicks: 3,
      threads: 2,
      startTicks: 12345,
      rssBytes: 250 * 4096,
    });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('finds the members of a process group, not the members of a recycled one', async () => {
    const leader = spawn('bash', ['-c', 'sleep 30 & sleep 30 & wait'], { detached: true, stdio: 'ignore' });
    try {
      const pid = leader.pid ?? -1;
      const start = processStartTicks(pid) ?? -1;
      await expect.poll(() => groupMembers(pid, start).length).toBe(3);
      expect(groupMembers(pid, start)).toContain(pid);
      expect(groupMembers(pid, start + 1)).toEqual([]); // the pid now belongs to a later process
    } finally {
      process.kill(-(leader.pid ?? 0), 'SIGKILL');
    }
  });
});
