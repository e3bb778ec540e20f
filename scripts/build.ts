// Compiles src/ to dist/ and copies the SQL migrations beside the compiled modules that run them,
// and the dashboard's static files (served as they are, from dist/dashboard/).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../', import.meta.url);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync(new URL('dist/', root), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
for (const dir of ['store/migrations/', 'reconciler/migrations/']) {
  cpSync(new URL(`src/${dir}`, root), new URL(`dist/${dir}`, root), { recursive: true });
}
// The page's own files, byte for byte: tsc (allowJs) also emits dashboard.js, with a source map
// and typings the page does not need; the copy replaces that emit and the rest goes.
const dashboard = new URL('dist/dashboard/', root);
rmSync(dashboard, { recursive: true, force: true });
mkdirSync(dashboard, { recursive: true });
for (const name of readdirSync(new URL('src/dashboard/', root))) {
  if (/\.(html|css|js)$/.test(name)) copyFileSync(new URL(`src/dashboard/${name}`, root), new URL(name, dashboard));
}
