import type { Store, TemplateRow } from '../store/store.ts';
import { ensureTemplateRootfs } from '../templates/builder.ts';
import { type BuiltinTemplate, builtinTemplates } from '../templates/builtin.ts';

/**
 * Builds (or finds cached) the root filesystems of the named built-in
 * templates and records them as active templates.
 * @throws Error when a name is not a built-in template or a build fails.
 */
export async function ensureBuiltinTemplates(
  store: Store,
  names: readonly string[],
  options: { cacheDir: string; onProgress: (line: string) => void },
): Promise<TemplateRow[]> {
  const out: TemplateRow[] = [];
  for (const name of names) {
    const def: BuiltinTemplate | undefined = builtinTemplates.find((t) => t.name === name);
    if (!def)
      throw new Error(`unknown built-in template '${name}' (known: ${builtinTemplates.map((t) => t.name).join(', ')})`);
    const fields = {
      name: def.name,
      displayName: def.displayName,
      description: def.description,
      category: def.category,
      language: def.language,
      isPublic: true,
      resources: {
        vcpu: def.resources.vcpu,
        memoryMiB: def.resources.memoryMiB,
        diskMiB: def.resources.diskMiB,
        pidsLimit: def.resources.pids,
      },
      env: { ...def.env },
      workdir: def.workdir,
      features: [...def.features],
    };
    const existing = store.findTemplate(name);
    if (existing?.status !== 'active') {
      store.upsertTemplate({ ...fields, status: 'building', rootfsDir: null, contentHash: null });
    }
    const built = await ensureTemplateRootfs(def, {
      cacheDir: options.cacheDir,
      onProgress: (line) => options.onProgress(`[template ${name}] ${line}`),
    });
    out.push(
      store.upsertTemplate({ ...fields, status: 'active', rootfsDir: built.rootfsDir, contentHash: built.contentHash }),
    );
  }
  return out;
}
