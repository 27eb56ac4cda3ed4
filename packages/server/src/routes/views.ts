import { rfc3339 } from '@warren/protocol';
import type { SandboxRow, TemplateRow } from '../store/store.ts';

const ts = (ms: number | null): string | null => (ms === null ? null : rfc3339(ms));

/** The Hopx sandbox object (PROTOCOL §6). */
export function sandboxView(
  row: SandboxRow,
  template: TemplateRow | undefined,
  publicHost: string,
): Record<string, unknown> {
  const resources = template?.resources;
  return {
    id: row.id,
    object: 'sandbox',
    status: row.status,
    public_host: publicHost,
    direct_url: publicHost,
    // Path-form preview base: append `{port}/` (see docs/ARCHITECTURE.md, Port previews).
    preview_url: `${publicHost}/sandboxes/${row.id}/ports/`,
    template_id: row.templateId,
    template_name: template?.name ?? null,
    organization_id: 1,
    node_id: 'local',
    region: row.region,
    resources: resources ? { vcpu: resources.vcpu, memory_mb: resources.memoryMiB, disk_mb: resources.diskMiB } : null,
    internet_access: row.internetAccess,
    metadata: row.metadata,
    live_mode: false,
    timeout_seconds: row.timeoutSeconds,
    expires_at: ts(row.expiresAt),
    created_at: ts(row.createdAt),
    started_at: ts(row.startedAt),
    end_at: ts(row.expiresAt),
  };
}

/** The Hopx template object (PROTOCOL §7). */
export function templateView(t: TemplateRow): Record<string, unknown> {
  const resources = {
    vcpu: t.resources.vcpu,
    memory_mb: t.resources.memoryMiB,
    disk_gb: Math.max(1, Math.round(t.resources.diskMiB / 1024)),
  };
  return {
    id: t.id,
    object: 'template',
    name: t.name,
    display_name: t.displayName,
    description: t.description,
    category: t.category,
    language: t.language,
    icon: '',
    docs_url: '',
    default_resources: resources,
    min_resources: resources,
    max_resources: resources,
    features: t.features,
    tags: [],
    popularity_score: 1,
    is_active: t.status === 'active',
    is_public: t.isPublic,
    status: t.status,
    build_id: t.kind === 'user' ? t.id : null,
    organization_id: null,
    created_at: rfc3339(t.createdAt),
    updated_at: rfc3339(t.updatedAt),
  };
}
