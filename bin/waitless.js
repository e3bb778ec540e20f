#!/usr/bin/env node
// In a clone the TypeScript source is there and runs as is (Node ≥ 22.18 strips types); the
// published package ships only the compiled dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
await import(existsSync(source) ? source.href : new URL('../dist/cli/main.js', import.meta.url).href);
