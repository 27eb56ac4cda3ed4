/**
 * Builds the OCI runtime spec (config.json) crun runs for one sandbox.
 */

import type { ReadyCheck } from '@warren/protocol';
import { SANDBOX_ID_RANGE, SANDBOX_ID_SHIFT } from '../../templates/builder.ts';
import { AGENT_COMMAND, RUNTIME_BUNDLE_MOUNT as BUNDLE_MOUNT } from '../bundle.ts';

/** Where the per-sandbox run directory (agent socket) is mounted inside a sandbox. */
export const RUN_MOUNT = '/run/warren';
/** Agent socket path inside the sandbox. */
export const AGENT_SOCKET_IN_SANDBOX = `${RUN_MOUNT}/agent.sock`;

export interface SandboxSpecInput {
  sandboxId: string;
  hostname: string;
  /** Mounted overlay root filesystem on the host. */
  rootfsDir: string;
  /** Runtime bundle directory on the host (mounted read-only at /.warren). */
  bundleDir: string;
  /** Per-sandbox run directory on the host (mounted at /run/warren). */
  runDir: string;
  /** Hex of the per-sandbox token key the agent verifies tokens with. */
  agentTokenKeyHex: string;
  /** Template env, passed to the agent as the base env of every child. */
  templateEnv: Record<string, string>;
  /** The template's start command and its readiness check, run by the agent. */
  startCmd?: string | null;
  readyCheck?: ReadyCheck | null;
  workdir: string;
  memoryMiB: number;
  vcpu: number;
  /** Boot at the lowest CPU weight (a warm-pool boot yields to every other sandbox); see `BootSpec.background`. */
  background?: boolean;
  pidsLimit: number;
  /** cgroup path, relative to each v1 hierarchy root. */
  cgroupsPath: string;
  /** RLIMIT_NOFILE for the sandbox; must not exceed the server's own hard limit. */
  maxOpenFiles: number;
}

/** cgroup v1 `cpu.shares` of a sandbox booting in the background: the kernel's minimum. */
export const BACKGROUND_CPU_SHARES = 2;

/** Capabilities a sandbox's root keeps (Docker's default set); everything else is dropped. */
const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Syscalls that answer EPERM inside a sandbox: kernel-wide state, modules, keyrings, namespaces, raw memory access. */
const DENIED_SYSCALLS = [
  'acct',
  'add_key',
  'bpf',
  'clock_adjtime',
  'clock_settime',
  'create_module',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'get_kernel_syms',
  'init_module',
  'io_uring_enter',
  'io_uring_register',
  'io_uring_setup',
  'ioperm',
  'iopl',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'lookup_dcookie',
  'mount',
  'mount_setattr',
  'move_mount',
  'name_to_handle_at',
  'nfsservctl',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'query_module',
  'quotactl',
  'reboot',
  'request_key',
  'setns',
  'settimeofday',
  'stime',
  'swapoff',
  'swapon',
  'sysfs',
  '_sysctl',
  'umount',
  'umount2',
  'unshare',
  'uselib',
  'userfaultfd',
  'ustat',
  'vhangup',
];

const CLONE_NEWUSER = 0x10000000;

function seccompProfile(): Record<string, unknown> {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: DENIED_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
      // clone3 cannot be filtered by flags: answer ENOSYS so libc falls back to clone.
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
      // No nested user namespaces through clone either.
      {
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 1,
        args: [{ index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ],
  };
}

/** Returns the OCI config for one sandbox. */
export function buildSandboxSpec(input: SandboxSpecInput): Record<string, unknown> {
  const memoryBytes = input.memoryMiB * 1024 * 1024;
  const periodUs = 100_000;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [...AGENT_COMMAND],
      env: [
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'HOME=/root',
        'LANG=C.UTF-8',
        `WARREN_SANDBOX_ID=${input.sandboxId}`,
        `WARREN_AGENT_TOKEN_KEY=${input.agentTokenKeyHex}`,
        `WARREN_AGENT_SOCKET=${AGENT_SOCKET_IN_SANDBOX}`,
        `WARREN_AGENT_WORKDIR=${input.workdir}`,
        `WARREN_TEMPLATE_ENV=${JSON.stringify(input.templateEnv)}`,
        ...(input.startCmd ? [`WARREN_START_CMD=${input.startCmd}`] : []),
        ...(input.startCmd && input.readyCheck ? [`WARREN_READY_CHECK=${JSON.stringify(input.readyCheck)}`] : []),
      ],
      cwd: '/',
      capabilities: {
        bounding: CAPABILITIES,
        effective: CAPABILITIES,
        permitted: CAPABILITIES,
        inheritable: [],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: input.maxOpenFiles, soft: input.maxOpenFiles }],
      noNewPrivileges: true,
      oomScoreAdj: 0,
    },
    root: { path: input.rootfsDir, readonly: false },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
      { destination: BUNDLE_MOUNT, type: 'bind', source: input.bundleDir, options: ['rbind', 'ro', 'nosuid', 'nodev'] },
      {
        destination: RUN_MOUNT,
        type: 'bind',
        source: input.runDir,
        options: ['rbind', 'rw', 'nosuid', 'nodev', 'noexec'],
      },
    ],
    linux: {
      uidMappings: [{ containerID: 0, hostID: SANDBOX_ID_SHIFT, size: SANDBOX_ID_RANGE }],
      gidMappings: [{ containerID: 0, hostID: SANDBOX_ID_SHIFT, size: SANDBOX_ID_RANGE }],
      namespaces: [
        { type: 'pid' },
        { type: 'network' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        { type: 'cgroup' },
        { type: 'user' },
      ],
      cgroupsPath: input.cgroupsPath,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: memoryBytes, swap: memoryBytes },
        cpu: {
          shares: input.background ? BACKGROUND_CPU_SHARES : 1024 * input.vcpu,
          quota: periodUs * input.vcpu,
          period: periodUs,
        },
        pids: { limit: input.pidsLimit },
      },
      rootfsPropagation: 'private',
      seccomp: seccompProfile(),
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
        '/sys/devices/virtual/powercap',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
