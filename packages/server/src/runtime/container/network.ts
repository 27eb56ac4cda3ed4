import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { run } from '../../internal/exec.ts';

/**
 * Host networking for container sandboxes: one bridge, one veth per sandbox,
 * and an nftables table that keeps sandboxes away from each other and from the
 * host, with NAT egress only for sandboxes whose address is in the `egress` set.
 */
export interface NetworkConfig {
  bridge: string;
  /** Bridge network, e.g. 10.213.0.0/16 (prefix must be /16). */
  cidr: string;
  /** nftables table name (family inet for filtering, ip for NAT). */
  table: string;
}

export interface SandboxAddress {
  ip: string;
  gateway: string;
  prefix: number;
  hostVeth: string;
}

/** Whether a network interface of that name exists in the host's namespace. */
function linkExists(name: string): Promise<boolean> {
  return access(`/sys/class/net/${name}`).then(
    () => true,
    () => false,
  );
}

/**
 * Deletes a host-side link if it exists and waits until the kernel has removed
 * it: a veth whose namespace just died is removed asynchronously (netns
 * clean-up), and a new veth of the same name fails with "File exists" until then.
 */
async function removeLink(name: string): Promise<void> {
  if (!(await linkExists(name))) return;
  await run(['ip', 'link', 'delete', name], { allowFailure: true });
  for (let attempt = 0; attempt < 400 && (await linkExists(name)); attempt++) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

function baseOctets(cidr: string): [number, number] {
  const m = /^(\d+)\.(\d+)\.0\.0\/16$/.exec(cidr);
  if (!m) throw new Error(`bridge network must be a /16 like 10.213.0.0/16, got ${cidr}`);
  return [Number(m[1]), Number(m[2])];
}

/**
 * Host-side veth name of a sandbox: `wv` + 4 hex digits of the bridge name +
 * the address index (at most 11 characters; the kernel allows 15). Interface
 * names are global to the host, so two servers on one machine (each with its
 * own bridge) must not share them: a boot removes a stale link of its name.
 */
export function vethName(bridge: string, addressIndex: number): string {
  return `wv${createHash('sha256').update(bridge).digest('hex').slice(0, 4)}${addressIndex}`;
}

/** Largest address index a /16 bridge network can hand out. */
export const MAX_ADDRESS_INDEX = 65_533;

export class HostNetwork {
  readonly config: NetworkConfig;
  readonly gateway: string;

  constructor(config: NetworkConfig) {
    this.config = config;
    const [a, b] = baseOctets(config.cidr);
    this.gateway = `${a}.${b}.0.1`;
  }

  /** Address of the sandbox with the given index (1..MAX_ADDRESS_INDEX). */
  address(index: number, vethName: string): SandboxAddress {
    const [a, b] = baseOctets(this.config.cidr);
    const n = index + 1; // .0.1 is the gateway
    return { ip: `${a}.${b}.${n >> 8}.${n & 255}`, gateway: this.gateway, prefix: 16, hostVeth: vethName };
  }

  /** Creates the bridge, enables forwarding and (re)loads the firewall table. Idempotent. */
  async setUp(): Promise<void> {
    const { bridge, cidr, table } = this.config;
    const exists = await run(['ip', 'link', 'show', bridge], { allowFailure: true });
    if (exists.code !== 0) await run(['ip', 'link', 'add', bridge, 'type', 'bridge']);
    const addrs = await run(['ip', '-o', '-4', 'addr', 'show', 'dev', bridge]);
    if (!addrs.stdout.includes(` ${this.gateway}/16 `)) {
      await run(['ip', 'addr', 'add', `${this.gateway}/16`, 'dev', bridge]);
    }
    await run(['ip', 'link', 'set', bridge, 'up']);
    await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    // Keep the egress set across a reload: sandboxes that are still running keep their policy.
    const current = await run(['nft', '-j', 'list', 'set', 'inet', table, 'egress'], { allowFailure: true });
    const kept: string[] = [];
    if (current.code === 0) {
      const parsed = JSON.parse(current.stdout) as { nftables: Array<{ set?: { elem?: string[] } }> };
      for (const item of parsed.nftables) kept.push(...(item.set?.elem ?? []));
    }
    const rules = `
table inet ${table}
delete table inet ${table}
table ip ${table}_nat
delete table ip ${table}_nat
table inet ${table} {
  set egress { type ipv4_addr; ${kept.length ? `elements = { ${kept.join(', ')} }` : ''} }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "${bridge}" drop
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "${bridge}" oifname "${bridge}" drop
    iifname "${bridge}" ip daddr { 169.254.0.0/16, 127.0.0.0/8 } drop
    iifname "${bridge}" ip saddr != @egress drop
    iifname "${bridge}" accept
    oifname "${bridge}" ct state established,related accept
    oifname "${bridge}" drop
  }
}
table ip ${table}_nat {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr ${cidr} oifname != "${bridge}" masquerade
  }
}
`;
    await run(['nft', '-f', '-'], { input: rules });
  }

  /**
   * Moves a new veth into the network namespace of `pid` as eth0 and
   * configures it; the host end joins the bridge, isolated from other ports.
   */
  async attach(pid: number, addr: SandboxAddress, internetAccess: boolean): Promise<void> {
    const { bridge } = this.config;
    // A veth of that name left by a sandbox that died with the server goes first (absent normally).
    await removeLink(addr.hostVeth);
    // One `ip` process for the host side (each process costs milliseconds on a busy host).
    await run(['ip', '-batch', '-'], {
      input: [
        `link add ${addr.hostVeth} type veth peer name eth0 netns ${pid}`,
        `link set ${addr.hostVeth} master ${bridge}`,
        `link set ${addr.hostVeth} type bridge_slave isolated on`,
        `link set ${addr.hostVeth} up`,
        '',
      ].join('\n'),
    });
    await run(['nsenter', '-t', String(pid), '-n', 'ip', '-batch', '-'], {
      input: [
        'link set lo up',
        `addr add ${addr.ip}/${addr.prefix} dev eth0`,
        'link set eth0 up',
        `route add default via ${addr.gateway}`,
        '',
      ].join('\n'),
    });
    await this.setEgress(addr.ip, internetAccess);
  }

  /** Grants or revokes NAT egress for one sandbox address. */
  async setEgress(ip: string, allowed: boolean): Promise<void> {
    const verb = allowed ? 'add' : 'delete';
    await run(['nft', verb, 'element', 'inet', this.config.table, 'egress', `{ ${ip} }`], { allowFailure: !allowed });
  }

  /** Removes what `attach` left on the host side (the veth dies with its namespace; this covers the rest). */
  async detach(addr: SandboxAddress): Promise<void> {
    await this.setEgress(addr.ip, false);
    // The host end normally dies with the container's netns (possibly still on its way out).
    await removeLink(addr.hostVeth);
  }

  /** Host-side veth names currently on the bridge. */
  async listVeths(): Promise<string[]> {
    const r = await run(['ip', '-o', 'link', 'show', 'master', this.config.bridge], { allowFailure: true });
    return r.stdout
      .split('\n')
      .map((l) => /^\d+:\s+([^@:]+)/.exec(l)?.[1])
      .filter((v): v is string => v !== undefined);
  }
}
