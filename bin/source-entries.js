// A resolve hook for running Waitless from its source: 'waitless' and 'waitless/<subpath>'
// resolve to the src/ files that the package's exports compile from.
import { readFileSync } from 'node:fs';

/**
 * Maps each export of package.json (e.g. "./client" → "./dist/client/index.js") to its source
 * file (src/client/index.ts) under `root`, a file URL ending in "/".
 *
 * @returns specifier ("waitless", "waitless/client", …) → file URL
 */
export function sourceEntries(root) {
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
  const entries = new Map();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const built = typeof target === 'string' ? target : target.default;
    const src = built.replace(/^\.\/dist\//, './src/').replace(/\.js$/, '.ts');
    entries.set(subpath === '.' ? pkg.name : `${pkg.name}${subpath.slice(1)}`, new URL(src, root).href);
  }
  return entries;
}

/** Hooks for node:module's registerHooks that resolve the package's own name to its source. */
export function sourceEntryHooks(root) {
  const entries = sourceEntries(root);
  return {
    resolve(specifier, context, nextResolve) {
      const url = entries.get(specifier);
      return url ? { url, shortCircuit: true } : nextResolve(specifier, context);
    },
  };
}
