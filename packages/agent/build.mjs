// Bundles the agent into one self-contained ESM file, dist/agent.mjs, and puts
// the files it runs beside it (dist/kernel_bridge.py). The server's runtime
// bundle ships both in /.warren/agent/.
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

await build({
  entryPoints: [join(here, 'src/main.ts')],
  outfile: join(here, 'dist/agent.mjs'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // ws loads these optional native speed-ups when present; the agent runs without them.
  external: ['bufferutil', 'utf-8-validate'],
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __warrenCreateRequire } from 'node:module'; const require = __warrenCreateRequire(import.meta.url);",
  },
  legalComments: 'none',
  minifySyntax: true,
  minifyWhitespace: true,
  sourcemap: false,
  logLevel: 'info',
});

await mkdir(join(here, 'dist'), { recursive: true });
await copyFile(join(here, 'src/kernel_bridge.py'), join(here, 'dist/kernel_bridge.py'));
