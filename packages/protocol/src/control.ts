import { z } from 'zod';
import { lazySchema } from './lazy-schema.ts';

// Wire shapes of control-plane responses (PROTOCOL §5–§7), as clients parse
// them. Objects are loose: a newer server may add fields, and clients must not
// break on them. Every schema is a lazySchema, built on first use.

/** Status of a sandbox (PROTOCOL §5.3). */
export const sandboxStatuses = ['creating', 'running', 'paused', 'stopped', 'error', 'deleted'] as const;

/** Status of a sandbox. */
export type SandboxStatus = (typeof sandboxStatuses)[number];

const nullableString = lazySchema(() => z.string().nullable());

/** Resources of a sandbox: `{vcpu, memory_mb, disk_mb}`. */
export const sandboxResourcesSchema = lazySchema(() =>
  z.looseObject({
    vcpu: z.number().int(),
    memory_mb: z.number().int(),
    disk_mb: z.number().int(),
  }),
);

/** The sandbox object (PROTOCOL §6): `GET /v1/sandboxes/{id}`, list items, and the create and lifecycle responses. */
export const sandboxObjectSchema = lazySchema(() =>
  z.looseObject({
    id: z.string(),
    status: z.enum(sandboxStatuses),
    public_host: z.string(),
    preview_url: nullableString.optional(),
    template_id: nullableString.optional(),
    template_name: nullableString.optional(),
    region: nullableString.optional(),
    resources: sandboxResourcesSchema.nullable().optional(),
    internet_access: z.boolean().nullable().optional(),
    timeout_seconds: z.number().int().nullable().optional(),
    expires_at: nullableString.optional(),
    created_at: nullableString.optional(),
    started_at: nullableString.optional(),
    auth_token: z.string().optional(),
    token_expires_at: z.string().optional(),
    request_id: z.string().optional(),
  }),
);

/** The sandbox object. */
export type SandboxObject = z.infer<typeof sandboxObjectSchema>;

/** Response of `POST /v1/sandboxes`: the sandbox object with its agent token. */
export const createdSandboxSchema = lazySchema(() =>
  sandboxObjectSchema.extend({
    auth_token: z.string(),
    token_expires_at: z.string(),
  }),
);

/** Response of `POST /v1/sandboxes`. */
export type CreatedSandbox = z.infer<typeof createdSandboxSchema>;

/** Response of `POST /v1/sandboxes/{id}/token/refresh`. */
export const tokenRefreshResponseSchema = lazySchema(() =>
  z.looseObject({
    auth_token: z.string(),
    token_expires_at: z.string(),
  }),
);

/** Response of `PUT /v1/sandboxes/{id}/timeout`. */
export const timeoutResponseSchema = lazySchema(() =>
  z.looseObject({
    id: z.string(),
    timeout_seconds: z.number().int().nullable(),
    expires_at: nullableString,
  }),
);

/** Response of `DELETE /v1/sandboxes/{id}` and `DELETE /v1/templates/{id}`. */
export const deletedResponseSchema = lazySchema(() =>
  z.looseObject({ id: z.union([z.string(), z.number()]).optional() }),
);

/** Response of `POST /v1/sandboxes/{id}/preview-token`. */
export const previewTokenResponseSchema = lazySchema(() =>
  z.looseObject({
    sandbox_id: z.string(),
    port: z.number().int(),
    token: z.string(),
    url: z.string(),
    path_url: z.string(),
    host_url: z.string().nullable().optional(),
    expires_at: z.string(),
  }),
);

/** Resources of a template: `{vcpu, memory_mb, disk_gb}`, each optional. */
export const templateResourcesSchema = lazySchema(() =>
  z.looseObject({
    vcpu: z.number().int().optional(),
    memory_mb: z.number().int().optional(),
    disk_gb: z.number().int().optional(),
  }),
);

/** Status of a template (PROTOCOL §7). */
export const templateStatuses = ['pending', 'building', 'publishing', 'active', 'failed', 'archived'] as const;

/** The template object (PROTOCOL §7). */
export const templateObjectSchema = lazySchema(() =>
  z.looseObject({
    id: z.string(),
    name: z.string(),
    display_name: z.string(),
    description: nullableString.optional(),
    category: nullableString.optional(),
    language: nullableString.optional(),
    default_resources: templateResourcesSchema.nullable().optional(),
    features: z.array(z.string()).optional(),
    is_active: z.boolean().optional(),
    is_public: z.boolean().nullable().optional(),
    status: z.string(),
    build_id: nullableString.optional(),
    created_at: nullableString.optional(),
    updated_at: nullableString.optional(),
  }),
);

/** The template object. */
export type TemplateObject = z.infer<typeof templateObjectSchema>;

/**
 * A list envelope (PROTOCOL §5.2): `{object:"list", data, has_more, next_cursor}`.
 * `data: null` reads as an empty page.
 */
export function listEnvelopeSchema<T extends z.ZodType>(item: T) {
  return z.looseObject({
    data: z
      .array(item)
      .nullable()
      .transform((d) => d ?? []),
    has_more: z.boolean().optional().default(false),
    next_cursor: nullableString.optional().default(null),
  });
}

/** The control-plane error envelope (PROTOCOL §4.1 option B); the agent's flat form also parses. */
export const errorEnvelopeSchema = lazySchema(() =>
  z.looseObject({
    code: z.string().optional(),
    message: z.string().optional(),
    error: z
      .union([
        z.string(),
        z.looseObject({
          code: z.string().optional(),
          message: z.string().optional(),
          details: z.record(z.string(), z.unknown()).optional(),
        }),
      ])
      .optional(),
    request_id: z.string().optional(),
    path: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
);

/** The error envelope. */
export type ErrorEnvelope = z.infer<typeof errorEnvelopeSchema>;

/** Response of `POST /v1/templates/files/upload-link` (PROTOCOL §5.6). */
export const uploadLinkResponseSchema = lazySchema(() =>
  z.looseObject({
    present: z.boolean(),
    upload_url: z.string().nullable().optional(),
    expires_at: nullableString.optional(),
    files_hash: z.string().optional(),
  }),
);

/** Response of `POST /v1/templates/build` (PROTOCOL §5.6). */
export const templateBuildResponseSchema = lazySchema(() =>
  z.looseObject({
    build_id: z.string(),
    template_id: z.string(),
    status: z.string(),
    logs_url: z.string().optional(),
  }),
);

/** Response of `GET /v1/templates/build/{id}/status` (PROTOCOL §5.6). */
export const templateBuildStatusSchema = lazySchema(() =>
  z.looseObject({
    build_id: z.string(),
    template_id: z.string(),
    status: z.string(),
    progress: z.number(),
    started_at: nullableString.optional(),
    current_step: nullableString.optional(),
    completed_at: nullableString.optional(),
    error_message: nullableString.optional(),
    build_duration_ms: z.number().nullable().optional(),
  }),
);

/** Response of `GET /v1/templates/build/{id}/logs?offset=N` (PROTOCOL §5.6). */
export const templateBuildLogsSchema = lazySchema(() =>
  z.looseObject({
    logs: z.string(),
    offset: z.number().int(),
    status: z.string(),
    complete: z.boolean(),
  }),
);
