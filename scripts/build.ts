// Compiles src/ to dist/ and copies the SQL migrations beside the compiled modules that run them.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const root = new URL('../', import.meta.url);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync(new URL('dist/', root), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
for (const dir of ['store/migrations/', 'reconciler/migrations/']) {
  cpSync(new URL(`src/${dir}`, root), new URL(`dist/${dir}`, root), { recursive: true });
}
