#!/usr/bin/env node
// Plain JavaScript that older Node.js versions still parse, so they can say what they need.
// In a clone the TypeScript source is there and runs as is (Node ≥ 22.18 strips types); the
// installed package ships only the compiled dist/.
import { existsSync } from 'node:fs';
import { assertNodeVersion } from './check-node.js';

assertNodeVersion();

const source = new URL('../src/cli/main.ts', import.meta.url);
await import(existsSync(source) ? source.href : new URL('../dist/cli/main.js', import.meta.url).href);
