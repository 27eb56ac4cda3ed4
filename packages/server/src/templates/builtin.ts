/**
 * The two templates every Warren server offers out of the box, `base` and
 * `code-interpreter`, as data. Their root filesystems are built from Debian
 * packages by `ensureTemplateRootfs` in `builder.ts`.
 */

/** Resource limits a sandbox gets by default. */
export interface TemplateResources {
  /** Virtual CPUs (cgroup CPU quota in whole CPUs). */
  readonly vcpu: number;
  /** Memory limit in MiB. */
  readonly memoryMiB: number;
  /** Writable-layer disk limit in MiB. */
  readonly diskMiB: number;
  /** Maximum number of processes and threads. */
  readonly pids: number;
}

/**
 * How a template's root filesystem is made from Debian packages with
 * `mmdebstrap`. Everything here feeds the rootfs content hash.
 */
export interface DebianRootfsRecipe {
  readonly kind: 'debian';
  /** Debian suite (codename). */
  readonly suite: 'bookworm';
  /** mmdebstrap variant: `apt` is the Essential:yes set plus apt. */
  readonly variant: 'apt';
  /** Packages installed on top of the variant, with their hard dependencies only (no Recommends). */
  readonly packages: readonly string[];
}

/** A built-in template: metadata served by `/v1/templates` plus the recipe of its root filesystem. */
export interface BuiltinTemplate {
  /** Stable name used by `template_name` (e.g. `code-interpreter`). */
  readonly name: string;
  /** Human name shown by SDKs and the dashboard. */
  readonly displayName: string;
  readonly description: string;
  readonly category: string;
  /** Main language of the template (`python`, `javascript`, …). */
  readonly language: string;
  readonly features: readonly string[];
  readonly tags: readonly string[];
  readonly rootfs: DebianRootfsRecipe;
  readonly resources: TemplateResources;
  /** Environment every process in the sandbox starts with, before per-sandbox env vars. */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory of commands and code; the builder creates it in the rootfs. */
  readonly workdir: string;
}

/** Environment shared by both built-in templates. */
const baseEnv: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  // Output of `python3 script.py` reaches streaming clients as it is printed.
  PYTHONUNBUFFERED: '1',
});

const basePackages = ['bash', 'coreutils', 'python3', 'ca-certificates', 'procps'] as const;

/** `base`: a small Debian with bash, coreutils, python3, CA certificates and procps. */
export const baseTemplate: BuiltinTemplate = Object.freeze({
  name: 'base',
  displayName: 'Base',
  description: 'Minimal Debian 12 (bookworm) with bash, coreutils, Python 3 and CA certificates.',
  category: 'general',
  language: 'python',
  features: Object.freeze(['bash', 'python']),
  tags: Object.freeze(['debian', 'bookworm', 'minimal']),
  rootfs: Object.freeze({
    kind: 'debian',
    suite: 'bookworm',
    variant: 'apt',
    packages: Object.freeze([...basePackages]),
  }),
  resources: Object.freeze({ vcpu: 1, memoryMiB: 512, diskMiB: 2048, pids: 256 }),
  env: baseEnv,
  workdir: '/workspace',
});

/**
 * `code-interpreter`: `base` plus the scientific Python stack with a Jupyter
 * kernel, Node.js and Go.
 *
 * `python3-munkres` is listed on purpose: `python3-fonttools` (pulled in by
 * matplotlib) depends on `python3-scipy | python3-munkres`, and apt takes the
 * first alternative unless the second is requested. scipy drags in pythran,
 * g++, libboost-dev and python3-all-dev (several hundred MB).
 */
export const codeInterpreterTemplate: BuiltinTemplate = Object.freeze({
  name: 'code-interpreter',
  displayName: 'Code Interpreter',
  description:
    'Debian 12 (bookworm) with Python 3 (numpy, pandas, matplotlib, Jupyter kernel), Node.js and Go, ' +
    'for running code written by AI agents.',
  category: 'data-science',
  language: 'python',
  features: Object.freeze(['bash', 'python', 'javascript', 'go', 'jupyter', 'rich-output']),
  tags: Object.freeze(['debian', 'bookworm', 'python', 'numpy', 'pandas', 'matplotlib', 'jupyter', 'nodejs', 'go']),
  rootfs: Object.freeze({
    kind: 'debian',
    suite: 'bookworm',
    variant: 'apt',
    packages: Object.freeze([
      ...basePackages,
      'python3-numpy',
      'python3-pandas',
      'python3-matplotlib',
      'python3-munkres',
      'python3-ipykernel',
      'python3-jupyter-client',
      'nodejs',
      'golang-go',
    ]),
  }),
  resources: Object.freeze({ vcpu: 2, memoryMiB: 2048, diskMiB: 10240, pids: 1024 }),
  env: Object.freeze({
    ...baseEnv,
    // No display in a sandbox: render figures to images instead of probing Tk.
    MPLBACKEND: 'Agg',
  }),
  workdir: '/workspace',
});

/** All built-in templates, in the order `/v1/templates` lists them. */
export const builtinTemplates: readonly BuiltinTemplate[] = Object.freeze([baseTemplate, codeInterpreterTemplate]);

/**
 * Looks up a built-in template by name.
 *
 * @returns the template, or `undefined` when no built-in template has that name.
 */
export function findBuiltinTemplate(name: string): BuiltinTemplate | undefined {
  return builtinTemplates.find((t) => t.name === name);
}
