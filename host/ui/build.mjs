// Bundles the dashboard (src/main.jsx and the style sheets it imports) into dist/app.js and
// dist/app.css, which `flowgate` embeds (host/src/server/ui.rs).
//   node build.mjs          writes dist/ and prints each file's size
//   node build.mjs --check  fails unless dist/ is what the sources build to now
import * as esbuild from 'esbuild';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { relative } from 'node:path';

const check = process.argv.includes('--check');
const result = await esbuild.build({
  entryPoints: { app: 'src/main.jsx' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'eof',
  outdir: 'dist',
  write: false,
  logLevel: 'warning',
});
const stale = [];
let total = 0;
let zipped = 0;
for (const f of result.outputFiles) {
  const file = relative(process.cwd(), f.path);
  total += f.contents.length;
  zipped += gzipSync(f.contents).length;
  console.log(`${file}: ${f.contents.length} bytes (${gzipSync(f.contents).length} gzipped)`);
  if (check) {
    let have = null;
    try { have = readFileSync(file); } catch {}
    if (!have || !have.equals(Buffer.from(f.contents))) stale.push(file);
  } else {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync('dist', { recursive: true });
    writeFileSync(file, f.contents);
  }
}
console.log(`bundle: ${total} bytes (${zipped} gzipped)`);
if (stale.length) {
  console.error(`the dashboard's bundle is not the build of its sources: ${stale.join(', ')} differ; run \`npm ci && npm run build\` in host/ui and commit dist/`);
  process.exit(1);
}
