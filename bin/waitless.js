#!/usr/bin/env node
// Plain JavaScript that older Node.js versions still parse, so they can say what they need.
// In a clone the TypeScript source is there and runs as is (Node ≥ 22.18 strips types); the
// installed package ships only the compiled dist/.
import { existsSync } from 'node:fs';
import { assertNodeVersion } from './check-node.js';

assertNodeVersion();

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source)) {
  // Running the source: a jobs module that imports 'waitless' (or 'waitless/client', …) gets
  // these same source files, not dist/, so there is one copy of every class (NonRetryableError
  // is one class for the job and for the worker that checks it) and no build is needed.
  const { sourceEntryHooks } = await import('./source-entries.js');
  const { registerHooks } = await import('node:module');
  registerHooks(sourceEntryHooks(new URL('../', import.meta.url)));
  await import(source.href);
} else {
  await import(new URL('../dist/cli/main.js', import.meta.url).href);
}
