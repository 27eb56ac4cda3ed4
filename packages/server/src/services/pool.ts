import type { Store } from '../store/store.ts';
import type { Logger, SandboxService } from './sandboxes.ts';

/**
 * Parses a pool size setting: `name=count` pairs separated by commas
 * (`code-interpreter=2,base=1`); a bare number applies to every template.
 * @throws Error on anything else.
 */
export function parsePoolSizes(text: string, templateNames: readonly string[]): Map<string, number> {
  const sizes = new Map<string, number>();
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    for (const name of templateNames) sizes.set(name, Number(trimmed));
    return sizes;
  }
  for (const part of trimmed.split(',').filter((p) => p.trim() !== '')) {
    const m = /^\s*([a-z0-9][a-z0-9._-]*)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`invalid WARREN_POOL entry '${part}' (use name=count, e.g. code-interpreter=2)`);
    sizes.set(m[1]!, Number(m[2]));
  }
  return sizes;
}

/**
 * Keeps a configured number of booted sandboxes per template, ready to be
 * claimed by create. Refills one sandbox at a time per template in the
 * background; a failed boot backs off before the next try. A template named
 * in the settings that does not exist yet (a user template) is pooled once
 * a build makes it active; a rebuild replaces its pooled sandboxes.
 */
export class WarmPool {
  private readonly store: Store;
  private readonly sandboxes: SandboxService;
  private readonly log: Logger;
  /** Target size per template id. */
  private readonly targets: Map<string, number>;
  /** Sizes by template name, for templates built later. */
  private readonly sizesByName: Map<string, number>;
  private readonly filling = new Map<string, Promise<void>>();
  /** Refills scheduled after a claim, per template id. */
  private readonly delayed = new Map<string, NodeJS.Timeout>();
  private readonly refillDelayMs: number;
  private stopped = false;

  constructor(deps: {
    store: Store;
    sandboxes: SandboxService;
    log: Logger;
    sizesByName: Map<string, number>;
    /** Wait after a claim before booting its replacement. @default 0 */
    refillDelayMs?: number;
  }) {
    this.store = deps.store;
    this.sandboxes = deps.sandboxes;
    this.log = deps.log;
    this.refillDelayMs = deps.refillDelayMs ?? 0;
    this.targets = new Map();
    this.sizesByName = deps.sizesByName;
    for (const [name, size] of deps.sizesByName) {
      const template = this.store.findTemplate(name);
      if (!template) {
        this.log.warn(
          `WARREN_POOL names template '${name}', which does not exist (yet); it is pooled once it is built`,
        );
        continue;
      }
      if (size > 0 && template.status === 'active') this.targets.set(template.id, size);
    }
    this.sandboxes.pooledTemplates = new Set(this.targets.keys());
    this.sandboxes.onPoolClaim = (templateId) => this.refillLater(templateId);
  }

  /** Starts filling every pool. */
  start(): void {
    for (const templateId of this.targets.keys()) this.refill(templateId);
  }

  /** Stops refilling (booted pool sandboxes stay, and are adopted again after a restart). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    await Promise.allSettled(this.filling.values());
  }

  /** Resolves when every pool has reached its target (or refilling stopped). */
  async ready(): Promise<void> {
    for (;;) {
      const pending = [...this.filling.values()];
      if (pending.length === 0 && this.delayed.size === 0) return;
      if (pending.length === 0) {
        await new Promise((r) => setTimeout(r, this.refillDelayMs));
        continue;
      }
      await Promise.allSettled(pending);
    }
  }

  /**
   * A build made a template active (new, or rebuilt): pooled sandboxes of its
   * previous version are replaced, then the pool fills from the new one.
   */
  async templateActivated(templateId: string): Promise<void> {
    const template = this.store.findTemplate(templateId);
    const size = template ? (this.sizesByName.get(template.name) ?? 0) : 0;
    if (!template || size === 0 || this.stopped) return;
    this.sandboxes.pooledTemplates.delete(templateId);
    await this.filling.get(templateId);
    await this.drain(templateId);
    this.targets.set(templateId, size);
    this.sandboxes.pooledTemplates.add(templateId);
    this.refill(templateId);
  }

  /** A template was deleted: its pooled sandboxes go, and it is not refilled. */
  async templateDeleted(templateId: string): Promise<void> {
    this.targets.delete(templateId);
    this.sandboxes.pooledTemplates.delete(templateId);
    await this.filling.get(templateId);
    await this.drain(templateId);
  }

  private async drain(templateId: string): Promise<void> {
    for (const row of this.store.sandboxesInStatus(['pooled'])) {
      if (row.templateId === templateId) await this.sandboxes.delete(row.id);
    }
  }

  /**
   * A claim took a pooled sandbox: its replacement boots `refillDelayMs`
   * later, so the boot (a Node.js start inside the sandbox, a few host
   * commands) does not compete with the request that claimed it and the
   * client's first calls to the new sandbox. Claims during the wait share
   * one refill, which then boots until the pool is full.
   */
  private refillLater(templateId: string): void {
    if (this.refillDelayMs === 0) {
      this.refill(templateId);
      return;
    }
    if (this.stopped || this.delayed.has(templateId) || this.filling.has(templateId)) return;
    const timer = setTimeout(() => {
      this.delayed.delete(templateId);
      this.refill(templateId);
    }, this.refillDelayMs);
    this.delayed.set(templateId, timer);
  }

  /** Boots sandboxes until the template's pool is full; one refill loop per template. */
  refill(templateId: string): void {
    if (this.stopped || this.filling.has(templateId)) return;
    const target = this.targets.get(templateId) ?? 0;
    const template = this.store.findTemplate(templateId);
    if (!template || target === 0) return;
    const loop = (async () => {
      let failures = 0;
      while (!this.stopped && this.targets.has(templateId) && this.store.countPool(templateId) < target) {
        try {
          await this.sandboxes.bootPooled(template);
          failures = 0;
        } catch (err) {
          failures++;
          this.log.warn(`warm pool ${template.name}: boot failed (${(err as Error).message}); retrying`);
          await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** failures)));
        }
      }
    })().finally(() => {
      this.filling.delete(templateId);
      // A claim that raced with the end of the loop gets its refill now.
      if (!this.stopped && this.targets.has(templateId) && this.store.countPool(templateId) < target) {
        this.refill(templateId);
      }
    });
    this.filling.set(templateId, loop);
  }
}
