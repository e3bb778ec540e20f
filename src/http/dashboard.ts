import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { dirname, extname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Hono } from 'hono';
import type { AuthEnv } from './auth.ts';
import { problem } from './problem.ts';

/**
 * The dashboard: a static page (`src/dashboard`, `dist/dashboard` once built) that reads the
 * API like any other client, with the caller's key. The files hold no data, so they are served
 * without a key; the page asks for one when the API answers 401, and refuses a non-admin one.
 *
 * Its scripts are ES modules that share the browser-safe contract (`src/contract`) with the
 * client SDK. The URL space mirrors the folders, so relative imports resolve in the browser as
 * they do on disk:
 *
 * - `/dashboard/` and `/dashboard/dashboard.css`: the page's own `.html` and `.css` files;
 * - `/dashboard/app/<name>.js`: the dashboard's modules;
 * - `/dashboard/contract/<name>.js`: the contract modules they import (from `.ts` source when
 *   running from a clone, with the types stripped by Node; compiled `.js` when installed);
 * - `/dashboard/vendor/eventsource-parser/<name>.js`: that dependency's browser build.
 *
 * Only the modules reachable from `app/main.js` by static imports are served, each by its exact
 * path in a table built once: no request path can reach any other file.
 */

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
};

const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-cache',
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

interface StaticFile {
  body: Uint8Array<ArrayBuffer>;
  type: string;
}

/** Beside this module's folder: `src/http` → `src/dashboard`, `dist/http` → `dist/dashboard`. */
const DASHBOARD_DIR = join(import.meta.dirname, '..', 'dashboard');
const CONTRACT_DIR = join(import.meta.dirname, '..', 'contract');
/** Bare imports the modules may make, and the one folder each is served from. */
const PACKAGES: Record<string, { prefix: string; entry: string }> = {
  'eventsource-parser': { prefix: 'vendor/eventsource-parser/', entry: 'index.js' },
};

/** Where a served module path (`app/…`, `contract/…`, `vendor/<package>/…`) lives on disk. */
function fileOf(path: string): string | undefined {
  const [root, ...rest] = path.split('/');
  const name = rest.join('/');
  if (root === 'app' && rest.length === 1) return join(DASHBOARD_DIR, name);
  if (root === 'contract' && rest.length === 1) {
    // A clone runs from the `.ts` source; an installed package from the compiled `.js`.
    const source = join(CONTRACT_DIR, name.replace(/\.js$/, '.ts'));
    return existsSync(source) ? source : join(CONTRACT_DIR, name);
  }
  for (const [pkg, { prefix }] of Object.entries(PACKAGES)) {
    const file = path.startsWith(prefix) ? path.slice(prefix.length) : undefined;
    if (file && !file.includes('/')) {
      // The package's entry file sits in the folder of every module it serves.
      return join(dirname(fileURLToPath(import.meta.resolve(pkg))), file);
    }
  }
  return undefined;
}

/** Static `import … from '…'`, `export … from '…'` and `import '…'` specifiers (type-only ones are gone by now). */
const IMPORT = /(^|[;\n]\s*)((?:import|export)\s[^'";]*?\bfrom\s*|import\s*)(['"])([^'"\n]+)\3/g;

/**
 * Reads a module, strips its types when it is TypeScript, and rewrites its imports into the
 * served URL space (`.ts` → `.js`; a bare package name → its vendored entry). Answers the code
 * and the served paths it imports.
 */
async function loadModule(path: string): Promise<{ code: string; imports: string[] }> {
  const file = fileOf(path);
  if (!file) throw new Error(`The dashboard module "${path}" is outside the served folders.`);
  let code = await readFile(file, 'utf8');
  if (file.endsWith('.ts')) {
    // Only from a clone (an installed package serves compiled `.js`); Node ≥ 22.13 has it.
    if (typeof nodeModule.stripTypeScriptTypes !== 'function') throw new Error(`Serving the dashboard from source needs Node ≥ 22.13 (module.stripTypeScriptTypes); build it (npm run build) or upgrade Node.`);
    code = stripTypes(code);
  }
  const imports: string[] = [];
  code = code.replace(IMPORT, (_all, lead: string, head: string, quote: string, specifier: string) => {
    let target: string;
    const pkg = PACKAGES[specifier];
    if (pkg) target = pkg.prefix + pkg.entry;
    else if (specifier.startsWith('./') || specifier.startsWith('../')) target = posix.join(posix.dirname(path), specifier).replace(/\.ts$/, '.js');
    else throw new Error(`The dashboard module "${path}" imports "${specifier}", which is not served.`);
    if (!fileOf(target)) throw new Error(`The dashboard module "${path}" imports "${specifier}", outside the served folders.`);
    imports.push(target);
    const relative = posix.relative(posix.dirname(path), target);
    return `${lead}${head}${quote}${relative.startsWith('.') ? relative : `./${relative}`}${quote}`;
  });
  return { code, imports };
}

/**
 * Node's type stripping, without its one-time "experimental" notice: serving the dashboard from
 * a clone is the development path, and the notice would read as a fault in every `dev` log.
 * The notice is emitted synchronously inside the call, so nothing else is silenced.
 */
function stripTypes(code: string): string {
  const descriptor = Object.getOwnPropertyDescriptor(process, 'emitWarning')!;
  process.emitWarning = () => {};
  try {
    return nodeModule.stripTypeScriptTypes(code);
  } finally {
    Object.defineProperty(process, 'emitWarning', descriptor);
  }
}

let files: Promise<Map<string, StaticFile>> | undefined;

/** Builds the table of served files once: the page's `.html`/`.css`, and the module graph of `app/main.js`. */
function loadFiles(): Promise<Map<string, StaticFile>> {
  files ??= (async () => {
    const map = new Map<string, StaticFile>();
    for (const entry of await readdir(DASHBOARD_DIR, { withFileTypes: true })) {
      const extension = extname(entry.name);
      if (!entry.isFile() || (extension !== '.html' && extension !== '.css')) continue;
      map.set(entry.name, { body: new Uint8Array(await readFile(join(DASHBOARD_DIR, entry.name))), type: CONTENT_TYPES[extension]! });
    }
    const pending = ['app/main.js'];
    while (pending.length > 0) {
      const path = pending.pop()!;
      if (map.has(path)) continue;
      const { code, imports } = await loadModule(path);
      map.set(path, { body: new Uint8Array(Buffer.from(code, 'utf8')), type: CONTENT_TYPES['.js']! });
      pending.push(...imports);
    }
    return map;
  })();
  // A failed read (a broken install) is retried by the next request rather than cached.
  void files.catch(() => {
    files = undefined;
  });
  return files;
}

async function serveFile(c: Context<AuthEnv>, name: string): Promise<Response> {
  const file = (await loadFiles()).get(name);
  if (!file) {
    return problem(c, 404, { type: '/problems/not-found', title: 'Not Found', detail: `The dashboard has no file "${name}".` });
  }
  return new Response(file.body, { status: 200, headers: { 'content-type': file.type, ...SECURITY_HEADERS } });
}

/** Serves the dashboard at `/dashboard/` (under the app's base path). */
export function addDashboardRoutes(app: Hono<AuthEnv>): void {
  // Relative, so it stays right under any base path: `/base/dashboard` → `/base/dashboard/`.
  app.get('/dashboard', () => new Response(null, { status: 301, headers: { location: 'dashboard/', 'cache-control': 'no-cache' } }));
  app.get('/dashboard/', (c) => serveFile(c, 'index.html'));
  // The path after `/dashboard/`, looked up as a whole in the table (never joined to a folder).
  app.get('/dashboard/*', (c) => {
    const path = c.req.path;
    return serveFile(c, path.slice(path.indexOf('/dashboard/') + '/dashboard/'.length));
  });
}
