// Compiles src/ to dist/ and copies the SQL migrations beside the compiled modules that run them,
// and the dashboard's page files beside its compiled modules (served from dist/dashboard/).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../', import.meta.url);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync(new URL('dist/', root), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
for (const dir of ['store/migrations/', 'reconciler/migrations/']) {
  cpSync(new URL(`src/${dir}`, root), new URL(`dist/${dir}`, root), { recursive: true });
}
// The dashboard: tsc (allowJs) compiled its modules into dist/dashboard/ beside the contract
// they import (relative `.ts` imports rewritten to `.js`); the page's own .html and .css files
// are copied there as they are.
for (const name of readdirSync(new URL('src/dashboard/', root))) {
  if (/\.(html|css)$/.test(name)) copyFileSync(new URL(`src/dashboard/${name}`, root), new URL(`dist/dashboard/${name}`, root));
}
