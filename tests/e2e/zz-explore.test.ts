import { Sandbox } from '@hopx-ai/sdk';
import { expect, inject, it } from 'vitest';

const ctx = inject('warren');
it('explores', async () => {
  const sb = await Sandbox.create({ template: 'code-interpreter', baseURL: ctx.baseURL, apiKey: ctx.apiKey });
  try {
    const cmds = [
      'id; uname -a; cat /proc/self/cgroup',
      'ls /sys/fs/cgroup; ls /sys/fs/cgroup/memory | head -50; ls /sys/fs/cgroup/cpuacct /sys/fs/cgroup/pids /sys/fs/cgroup/cpu 2>&1 | head -60',
      'cat /sys/fs/cgroup/memory/memory.usage_in_bytes /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids/pids.max 2>&1',
      'cat /sys/fs/cgroup/memory/memory.stat | head -20',
      'ls -la /dev /dev/pts; mount | head -40',
      'python3 -c "import ipykernel, jupyter_client, IPython, matplotlib, pandas, tornado, zmq; print(ipykernel.__version__, jupyter_client.__version__, IPython.__version__, matplotlib.__version__, zmq.__version__)"',
      'python3 -c "import matplotlib_inline; print(matplotlib_inline.__file__)"; env; ps -eo pid,pgid,user,rss,args',
      'cat /proc/meminfo | head -5; nproc; cat /proc/loadavg; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; df -B1 / /workspace',
      'ls /.warren /.warren/bin; cat /etc/os-release | head -2; which script stty',
    ];
    for (const c of cmds) {
      const r = await sb.commands.run(c, { timeout: 20 });
      console.log(`$ ${c}\n${r.stdout}${r.stderr}`);
    }
    expect(true).toBe(true);
  } finally {
    await sb.kill();
  }
});
