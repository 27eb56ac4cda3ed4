// Bundles the agent into one self-contained CommonJS file, dist/agent.cjs
// (wrapped as a function, see below), and its process entry into
// dist/boot.cjs (which runs agent.cjs with a V8 code cache when there is one,
// see src/boot.ts), and puts the files the agent runs
// beside them (dist/kernel_bridge.py). The server's runtime bundle ships them
// in /.warren/agent/ and records the code cache there.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
// --outdir: where to put them instead of dist/ (the tests build a private copy).
const { values } = parseArgs({ options: { outdir: { type: 'string', default: join(here, 'dist') } } });
const outdir = values.outdir;

/**
 * zod evaluates its `locales` namespace, error messages in about fifty
 * languages, when it loads; nothing in the agent reads it (zod's default, English,
 * is imported by zod itself). Here it holds English alone.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => {
      if (!args.importer.includes(`${join('node_modules', 'zod')}/`)) return undefined;
      return { path: join(dirname(args.importer), '../locales/en.js'), namespace: 'zod-english-only' };
    });
    b.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(args.path)};`,
      resolveDir: dirname(args.path),
    }));
  },
};

/** Options shared by both bundles. CommonJS: only a classic script can be compiled with a V8 code cache. */
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The sources are ESM: give them the module URL CommonJS knows as __filename.
  define: { 'import.meta.url': '__warrenModuleURL' },
  // "use strict" first: the sources are ES modules, strict code; esbuild's own directive comes after the banner.
  banner: { js: "'use strict'; const __warrenModuleURL = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'none',
  minifySyntax: true,
  minifyWhitespace: true,
  sourcemap: false,
  logLevel: 'warning',
};

await build({
  ...common,
  entryPoints: [join(here, 'src/main.ts')],
  outfile: join(outdir, 'agent.cjs'),
  // The module wrapper Node would add, written into the file: boot.cjs compiles the file as it is.
  banner: { js: `(function (exports, require, module, __filename, __dirname) { ${common.banner.js}` },
  footer: { js: '});' },
  // ws loads these optional native speed-ups when present; the agent runs without them.
  external: ['bufferutil', 'utf-8-validate'],
  plugins: [zodEnglishOnly],
});
await build({ ...common, entryPoints: [join(here, 'src/boot.ts')], outfile: join(outdir, 'boot.cjs') });

await mkdir(outdir, { recursive: true });
await copyFile(join(here, 'src/kernel_bridge.py'), join(outdir, 'kernel_bridge.py'));
// The ESM bundle of earlier builds; nothing runs it any more.
await rm(join(outdir, 'agent.mjs'), { force: true });
