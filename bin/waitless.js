#!/usr/bin/env node
// Runs the compiled CLI when the package is built (installed from npm), the TypeScript source
// otherwise (a clone before `npm run build`; Node ≥ 22.18 strips types itself).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
