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
 * background; a failed boot backs off before the next try.
 */
export class WarmPool {
  private readonly store: Store;
  private readonly sandboxes: SandboxService;
  private readonly log: Logger;
  /** Target size per template id. */
  private readonly targets: Map<string, number>;
  private readonly filling = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(deps: { store: Store; sandboxes: SandboxService; log: Logger; sizesByName: Map<string, number> }) {
    this.store = deps.store;
    this.sandboxes = deps.sandboxes;
    this.log = deps.log;
    this.targets = new Map();
    for (const [name, size] of deps.sizesByName) {
      const template = this.store.findTemplate(name);
      if (!template) throw new Error(`WARREN_POOL names unknown template '${name}'`);
      if (size > 0) this.targets.set(template.id, size);
    }
    this.sandboxes.pooledTemplates = new Set(this.targets.keys());
    this.sandboxes.onPoolClaim = (templateId) => this.refill(templateId);
  }

  /** Starts filling every pool. */
  start(): void {
    for (const templateId of this.targets.keys()) this.refill(templateId);
  }

  /** Stops refilling (booted pool sandboxes stay, and are adopted again after a restart). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled(this.filling.values());
  }

  /** Resolves when every pool has reached its target (or refilling stopped). */
  async ready(): Promise<void> {
    for (;;) {
      const pending = [...this.filling.values()];
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /** Boots sandboxes until the template's pool is full; one refill loop per template. */
  refill(templateId: string): void {
    if (this.stopped || this.filling.has(templateId)) return;
    const target = this.targets.get(templateId) ?? 0;
    const template = this.store.findTemplate(templateId);
    if (!template || target === 0) return;
    const loop = (async () => {
      let failures = 0;
      while (!this.stopped && this.store.countPool(templateId) < target) {
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
      if (!this.stopped && this.store.countPool(templateId) < target) this.refill(templateId);
    });
    this.filling.set(templateId, loop);
  }
}
