import { readFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

/**
 * Maps each export of package.json (e.g. "./client" → "./dist/client/index.js") to the source
 * file it is compiled from (src/client/index.ts) under `root`, a file URL ending in "/".
 *
 * @returns specifier ("waitless", "waitless/client", …) → file URL
 */
export function sourceEntries(root: URL): Map<string, string> {
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { name: string; exports: Record<string, string | { default: string }> };
  const entries = new Map<string, string>();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const built = typeof target === 'string' ? target : target.default;
    const source = built.replace(/^\.\/dist\//, './src/').replace(/\.js$/, '.ts');
    entries.set(subpath === '.' ? pkg.name : `${pkg.name}${subpath.slice(1)}`, new URL(source, root).href);
  }
  return entries;
}

/**
 * For the CLI run from its source (a clone): `waitless` and `waitless/<subpath>`, imported by a
 * jobs module wherever it lives, resolve to the same source files the CLI runs. Else such a
 * module would get dist/ (or nothing, before a build), a second copy of every class, and
 * `instanceof NonRetryableError` would be false in the worker. Synchronous and in-thread
 * (node:module registerHooks, Node ≥ 22.15).
 */
export function resolveOwnNameToSource(root: URL): void {
  const entries = sourceEntries(root);
  registerHooks({
    resolve(specifier, context, nextResolve) {
      const url = entries.get(specifier);
      return url ? { url, shortCircuit: true } : nextResolve(specifier, context);
    },
  });
}
