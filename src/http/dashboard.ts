import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Context, Hono } from 'hono';
import type { AuthEnv } from './auth.ts';
import { problem } from './problem.ts';

/**
 * The dashboard: a static page (`src/dashboard`, `dist/dashboard` once built) that reads the
 * API like any other client, with the caller's key. The files hold no data, so they are served
 * without a key; the page asks for one when the API answers 401.
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

let files: Promise<Map<string, StaticFile>> | undefined;

/**
 * Reads the page's files once: only the folder's own `.html`, `.css` and `.js` files, by exact
 * name, so no request path can reach anything else (no traversal, no source maps, no typings).
 */
function loadFiles(): Promise<Map<string, StaticFile>> {
  files ??= (async () => {
    const map = new Map<string, StaticFile>();
    for (const entry of await readdir(DASHBOARD_DIR, { withFileTypes: true })) {
      const type = CONTENT_TYPES[extname(entry.name)];
      if (!entry.isFile() || !type) continue;
      const content = await readFile(join(DASHBOARD_DIR, entry.name));
      map.set(entry.name, { body: new Uint8Array(content), type });
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
  app.get('/dashboard/:file', (c) => serveFile(c, c.req.param('file')));
}
