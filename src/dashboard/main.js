// @ts-check
/**
 * The Waitless dashboard: one page, no build step of its own, no framework. It is a client of
 * the public HTTP API like any other — the same routes, the same key — so it can show nothing
 * the API does not. Live updates come from two Server-Sent Event streams read with `fetch`
 * (EventSource cannot send an `Authorization` header): the tenant's job changes
 * (`GET /v1/events`) for the list, and one job's event log (`GET /v1/jobs/:id/events`) for the
 * detail. Statuses, SSE parsing and the folding of events into a job come from the same
 * contract modules as the client SDK's (`src/contract`), served beside these.
 *
 * Every piece of server data reaches the DOM through `textContent` or attribute setters, never
 * through HTML parsing.
 *
 * This module signs in, follows the tenant stream and routes; `page.js` holds the page's state,
 * `list.js` the list, `detail.js` one job, `api.js` the calls.
 */
import { checkAdmin, follow } from './api.js';
import { closeDetail, openDetail, showDetail } from './detail.js';
import { asJob, parseJson } from './helpers.js';
import { list } from './list.js';
import { beginSession, els, hooks, session, setConnection, signedIn } from './page.js';

/** Signs in (or starts open, in dev mode): the admin check, then list, tenant stream, current route. */
async function start() {
  beginSession();
  const { signal } = session;
  let admitted = false;
  try {
    admitted = await checkAdmin(signal);
  } catch (error) {
    if (signal.aborted) return;
    // The API is unreachable: try again shortly, as a lost stream would.
    setConnection('reconnecting');
    setTimeout(() => {
      if (!signal.aborted) void start();
    }, 2000);
    console.warn('The dashboard could not reach the API:', error);
    return;
  }
  if (!admitted || signal.aborted) return;
  route();
  void list.load('reset').then(() => {
    if (signedIn) void followTenant(signal);
  });
}

/**
 * The tenant-wide stream: every change of any job, as its summary. Re-lists on every
 * (re)connection, since the stream has no backlog and changes during a gap would be missed.
 * @param {AbortSignal} signal
 */
async function followTenant(signal) {
  let opened = false;
  await follow({
    path: () => '/events',
    signal,
    onOpen: () => {
      setConnection('live');
      // Also the first time: a change between the first list and this connection would be lost.
      void list.load('refresh');
      if (opened) openDetail()?.resync();
      opened = true;
    },
    onDrop: () => setConnection('reconnecting'),
    onMessage: (message) => {
      if (message.event === 'resync') {
        // The server may have missed changes (its database connection dropped): catch up.
        void list.load('refresh');
        openDetail()?.resync();
        return;
      }
      if (message.event !== 'job') return;
      const job = asJob(parseJson(message.data));
      if (!job) return;
      list.upsert(job, 'stream');
      const detail = openDetail();
      if (detail?.id === job.id) detail.applySummary(job);
    },
  });
}

// ------------------------------------------------------------------------------ routing

/** `#/jobs/<id>` shows a job; anything else, the list. A reload keeps the selection. */
function route() {
  if (!signedIn) return;
  const match = /^#\/jobs\/([^/?#]+)$/.exec(location.hash);
  const id = match?.[1] ? decodeURIComponent(match[1]) : undefined;
  if (id) {
    els.listView.hidden = true;
    els.detailView.hidden = false;
    showDetail(id);
  } else {
    closeDetail();
    document.title = 'Waitless';
    els.detailView.hidden = true;
    els.listView.hidden = false;
  }
}

hooks.signIn = () => void start();
hooks.signOut = closeDetail;
window.addEventListener('hashchange', route);

void start();
