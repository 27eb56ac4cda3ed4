/**
 * The runtime driver interface: how the sandbox service boots and removes
 * sandboxes, whatever isolates them (containers now, microVMs later).
 */

import type { ReadyCheck } from '@warren/protocol';

export interface SandboxResources {
  vcpu: number;
  memoryMiB: number;
  diskMiB: number;
  pidsLimit: number;
}

export interface BootSpec {
  sandboxId: string;
  /**
   * Read-only root filesystem of the template: one directory, or several
   * layers joined by `:` (top first, overlay `lowerdir` order).
   */
  templateRootfs: string;
  resources: SandboxResources;
  templateEnv: Record<string, string>;
  workdir: string;
  internetAccess: boolean;
  /**
   * Boot at the lowest CPU weight, so the boot (mostly the agent's Node.js
   * start) takes only CPU time no other sandbox wants; `setForeground` gives
   * the sandbox its normal weight. Warm-pool boots use it.
   */
  background?: boolean;
  /** Network address slot, unique among live sandboxes. */
  addressIndex: number;
  /** Hex key the agent verifies this sandbox's tokens with. */
  agentTokenKeyHex: string;
  /** The template's start command, started by the agent at boot. */
  startCmd?: string | null;
  /** Readiness check of the start command. */
  readyCheck?: ReadyCheck | null;
}

export interface Driver {
  /** Boots a sandbox and resolves once its agent answers; cleans up after itself on failure. */
  boot(spec: BootSpec): Promise<void>;
  /** Gives a sandbox booted with `background` its normal CPU weight (by its vcpu count). */
  setForeground(sandboxId: string, vcpu: number): Promise<void>;
  /** Puts a sandbox back to the lowest CPU weight (as booted with `background`). */
  setBackground(sandboxId: string): Promise<void>;
  /**
   * Sends SIGKILL to every process of a sandbox (thawing it first) and waits
   * (up to 2 s) until they are gone; removes nothing else. Idempotent.
   */
  kill(sandboxId: string): Promise<void>;
  /** Removes every trace of a sandbox (process, mounts, network, cgroups, files). Idempotent. */
  destroy(sandboxId: string, addressIndex: number): Promise<void>;
  /** Ends every process of a sandbox and frees its network and cgroups, keeping its filesystem for a later `boot`. */
  stop(sandboxId: string, addressIndex: number): Promise<void>;
  /** Freezes every process of a sandbox (memory and files stay). */
  pause(sandboxId: string): Promise<void>;
  /** Thaws a paused sandbox. */
  resume(sandboxId: string): Promise<void>;
  /** Grants or revokes a sandbox's network egress. */
  setInternetAccess(addressIndex: number, allowed: boolean): Promise<void>;
  /** Host directory of the sandbox's writable layer (what a template build step keeps). */
  writableLayer(sandboxId: string): string;
  /** Host path of the unix socket the sandbox's agent listens on. */
  agentSocket(sandboxId: string): string;
  /** Ids of sandboxes the runtime knows, with whether their process is alive. */
  list(): Promise<Array<{ sandboxId: string; running: boolean }>>;
  /** Ids of sandboxes that have state on disk. */
  directories(): Promise<string[]>;
}
