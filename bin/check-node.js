// Plain JavaScript that any Node.js since 14 parses: it runs first, so that an older Node says
// what it needs instead of failing further on (.ts files unknown, no glob in `node --test`).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** The lowest Node.js version Waitless runs on, read from package.json's engines field. */
export const REQUIRED = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).engines.node.replace(/^>=\s*/, '');

function parts(version) {
  return String(version).replace(/^v/, '').split('.').map((n) => Number.parseInt(n, 10) || 0);
}

/**
 * Answers why `version` (e.g. process.versions.node, "20.19.0" or "v20.19.0") cannot run
 * Waitless, or undefined when it can.
 */
export function nodeVersionProblem(version, required = REQUIRED) {
  const have = parts(version);
  const need = parts(required);
  for (let i = 0; i < 3; i++) {
    const a = have[i] || 0;
    const b = need[i] || 0;
    if (a > b) return undefined;
    if (a < b) {
      return (
        `Waitless needs Node.js ${required} or newer (it runs its TypeScript directly and uses ` +
        `node:module hooks); this is Node.js ${String(version).replace(/^v/, '')}. ` +
        'Install a current Node.js (https://nodejs.org, or nvm install 24) and try again.'
      );
    }
  }
  return undefined;
}

/** Exits with the reason when the running Node.js is too old. */
export function assertNodeVersion(version = process.versions.node) {
  const problem = nodeVersionProblem(version);
  if (problem) {
    process.stderr.write(`waitless: ${problem}\n`);
    process.exit(1);
  }
}

// Run as a script (`node bin/check-node.js`, the first step of `npm test`).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) assertNodeVersion();
