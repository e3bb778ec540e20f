// @ts-check
/** The list: one page of jobs after another, kept live by the tenant stream, with filters and open-by-id. */
import { JOB_STATUSES } from '../contract/statuses.ts';
import { api, ApiError, AuthError, describe, isAbort } from './api.js';
import { copy, h, relativeTime, shortId, showError, statusLabel, timeElement } from './helpers.js';
import { els, session } from './page.js';
import { badge, paintProgress, progressNote, progressPercent } from './widgets.js';

/** @typedef {import('./types.js').JobSummary} JobSummary */
/** @typedef {import('./types.js').JobView} JobView */

const PAGE_SIZE = 25;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** @param {JobSummary} a @param {JobSummary} b */
const newestFirst = (a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : a.id > b.id ? -1 : 0) : a.createdAt < b.createdAt ? 1 : -1);

export const list = {
  /** @type {Map<string, JobSummary>} */
  jobs: new Map(),
  /** @type {Map<string, HTMLTableRowElement>} */
  rows: new Map(),
  /** @type {string | undefined} */
  nextCursor: undefined,
  /** Bumped by every filter change, so the answer to an outdated request is dropped. */
  generation: 0,
  loaded: false,
  /** @type {Set<string>} */
  names: new Set(),
  orderScheduled: false,
  /** Counts stream news; `touched` remembers when each job last had some. */
  tick: 0,
  /** @type {Map<string, number>} */
  touched: new Map(),

  /** @returns {{ statuses: string[], name: string }} */
  filters() {
    const statuses = [...els.statusOptions.querySelectorAll('input:checked')].map((input) => /** @type {HTMLInputElement} */ (input).value);
    return { statuses, name: els.nameFilter.value.trim() };
  },

  /** @param {JobSummary} job */
  matches(job) {
    const { statuses, name } = this.filters();
    return (statuses.length === 0 || statuses.includes(job.status)) && (!name || job.name === name);
  },

  /**
   * `reset`: the first page for the current filters. `refresh`: the pages already shown, merged
   * in (after a reconnection). `more`: the next page.
   * @param {'reset' | 'refresh' | 'more'} mode
   */
  async load(mode) {
    if (mode === 'reset') this.generation += 1;
    if (mode === 'more' && !this.nextCursor) return;
    const generation = this.generation;
    const { statuses, name } = this.filters();
    const query = new URLSearchParams();
    if (statuses.length > 0) query.set('status', statuses.join(','));
    if (name) query.set('name', name);
    const limit = mode === 'refresh' ? Math.min(100, Math.max(PAGE_SIZE, this.jobs.size)) : PAGE_SIZE;
    query.set('limit', String(limit));
    if (mode === 'more' && this.nextCursor) query.set('cursor', this.nextCursor);
    els.loadMore.disabled = true;
    const startTick = this.tick;
    try {
      /** @type {{ jobs: JobView[], nextCursor?: string }} */
      const page = await api(`/jobs?${query.toString()}`, { signal: session.signal });
      if (generation !== this.generation) return;
      showError(els.listError, undefined);
      if (mode === 'reset') this.clear();
      if (mode === 'refresh') this.dropMissing(page, startTick);
      for (const job of page.jobs) this.upsert(job, 'list');
      if (mode !== 'refresh' || this.jobs.size <= page.jobs.length) this.nextCursor = page.nextCursor;
      this.loaded = true;
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      showError(els.listError, `Could not load the jobs: ${describe(error)}`);
    } finally {
      if (generation === this.generation) this.renderFoot();
    }
  },

  /**
   * After a refresh: a listed job the answer leaves out, within the range the answer covers,
   * no longer matches the filters (it changed while the stream was down). Jobs the stream
   * told about after the request went out are kept: the answer may predate them.
   * @param {{ jobs: JobSummary[], nextCursor?: string }} page
   * @param {number} startTick
   */
  dropMissing(page, startTick) {
    const answered = new Set(page.jobs.map((job) => job.id));
    const oldest = page.jobs.at(-1);
    for (const job of [...this.jobs.values()]) {
      if (answered.has(job.id) || (this.touched.get(job.id) ?? 0) > startTick) continue;
      if (!page.nextCursor || (oldest && newestFirst(job, oldest) <= 0)) this.remove(job.id);
    }
  },

  clear() {
    this.touched.clear();
    this.jobs.clear();
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    this.nextCursor = undefined;
  },

  /**
   * Applies news about a job. A higher version wins; a job that no longer matches the filters
   * leaves the list; a new one from the stream enters it (at its place, newest first) when it
   * falls within the loaded range.
   * @param {JobSummary} job
   * @param {'list' | 'stream'} source
   */
  upsert(job, source) {
    if (source === 'stream') this.touched.set(job.id, ++this.tick);
    const known = this.jobs.get(job.id);
    if (known && known.version > job.version) return;
    this.rememberName(job.name);
    if (!this.matches(job)) {
      if (known) this.remove(job.id);
      return;
    }
    if (!known && source === 'stream' && this.nextCursor) {
      const oldest = [...this.jobs.values()].sort(newestFirst).at(-1);
      if (oldest && newestFirst(job, oldest) > 0) return; // belongs to a page not loaded yet
    }
    this.jobs.set(job.id, job);
    let row = this.rows.get(job.id);
    if (!row) {
      row = createRow(job);
      if (source === 'stream' && this.loaded) row.classList.add('row-new');
      this.rows.set(job.id, row);
      this.scheduleOrder();
    }
    paintRow(row, job);
    this.renderFoot();
  },

  /** @param {string} id */
  remove(id) {
    this.jobs.delete(id);
    this.rows.get(id)?.remove();
    this.rows.delete(id);
    this.renderFoot();
  },

  /** @param {string} name */
  rememberName(name) {
    if (this.names.has(name)) return;
    this.names.add(name);
    els.jobNames.replaceChildren(...[...this.names].sort().map((n) => h('option', { attrs: { value: n } })));
  },

  scheduleOrder() {
    if (this.orderScheduled) return;
    this.orderScheduled = true;
    queueMicrotask(() => {
      this.orderScheduled = false;
      const ordered = [...this.jobs.values()].sort(newestFirst);
      let cursor = els.jobsBody.firstElementChild;
      for (const job of ordered) {
        const row = this.rows.get(job.id);
        if (!row) continue;
        if (row === cursor) cursor = cursor.nextElementSibling;
        else els.jobsBody.insertBefore(row, cursor);
      }
    });
  },

  renderFoot() {
    const count = this.jobs.size;
    els.jobsEmpty.hidden = !this.loaded || count > 0;
    els.jobsCount.textContent = this.loaded ? `${count} job${count === 1 ? '' : 's'} shown${this.nextCursor ? ', more below' : ''}` : 'Loading…';
    els.loadMore.hidden = !this.nextCursor;
    els.loadMore.disabled = false;
  },
};

/** @param {JobSummary} job */
function createRow(job) {
  const idLink = h('a', { className: 'mono job-id', text: shortId(job.id), title: job.id, testid: 'job-id', attrs: { href: `#/jobs/${encodeURIComponent(job.id)}` } });
  const copyButton = h('button', { className: 'copy', text: 'copy', title: 'Copy the full id', testid: 'copy-job-id', attrs: { type: 'button', 'aria-label': `Copy job id ${job.id}` } });
  copyButton.addEventListener('click', (event) => {
    event.stopPropagation();
    void copy(job.id, copyButton);
  });
  const bar = h('div', { className: 'progress', attrs: { role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': `Progress of ${job.id}` } }, [h('div', { className: 'progress-fill' })]);
  const row = h('tr', { testid: 'job-row' }, [
    h('td', { className: 'cell-id' }, [idLink, copyButton]),
    h('td', { className: 'cell-name', text: job.name, testid: 'job-name' }),
    h('td', { className: 'cell-status' }),
    h('td', { className: 'col-progress' }, [
      h('div', { className: 'progress-line' }, [bar, h('span', { className: 'progress-percent', testid: 'job-percent' })]),
      h('div', { className: 'progress-note', testid: 'job-stage' }),
    ]),
    h('td', { className: 'cell-attempt', testid: 'job-attempt' }),
    h('td', { className: 'cell-created' }),
    h('td', { className: 'cell-updated' }),
  ]);
  row.dataset.jobId = job.id;
  row.addEventListener('animationend', () => row.classList.remove('row-new'));
  return row;
}

/**
 * Updates a row in place, so a moving progress bar animates instead of being redrawn.
 * @param {HTMLTableRowElement} row
 * @param {JobSummary} job
 */
function paintRow(row, job) {
  const [, , statusCell, progressCell, attemptCell, createdCell, updatedCell] = row.cells;
  if (!statusCell || !progressCell || !attemptCell || !createdCell || !updatedCell) return;
  const percent = progressPercent(job);
  row.dataset.status = job.status;
  row.dataset.version = String(job.version);
  row.dataset.percent = percent === undefined ? '' : String(percent);
  if (row.dataset.shownStatus !== job.status) {
    statusCell.replaceChildren(badge(job.status, 'job-status'));
    row.dataset.shownStatus = job.status;
  }
  const bar = /** @type {HTMLElement} */ (progressCell.querySelector('.progress'));
  paintProgress(bar, job);
  const percentText = /** @type {HTMLElement} */ (progressCell.querySelector('.progress-percent'));
  percentText.textContent = percent === undefined ? (job.status === 'running' ? '…' : '—') : `${percent}%`;
  const note = /** @type {HTMLElement} */ (progressCell.querySelector('.progress-note'));
  const failure = job.error?.message && job.status !== 'completed' ? job.error.message : undefined;
  note.textContent = failure ?? progressNote(job);
  // A cancellation is someone's decision, not a fault: said, not flagged.
  note.classList.toggle('is-error', failure !== undefined && job.status !== 'cancelled');
  note.title = note.textContent;
  attemptCell.textContent = `${job.attempt}/${job.maxAttempts}`;
  createdCell.replaceChildren(timeElement(job.createdAt));
  updatedCell.replaceChildren(timeElement(job.updatedAt));
}

els.jobsBody.addEventListener('click', (event) => {
  const target = /** @type {Element} */ (event.target);
  if (target.closest('a, button')) return;
  const row = /** @type {HTMLTableRowElement | null} */ (target.closest('tr[data-job-id]'));
  if (row?.dataset.jobId) location.hash = `#/jobs/${encodeURIComponent(row.dataset.jobId)}`;
});

els.loadMore.addEventListener('click', () => void list.load('more'));

for (const status of JOB_STATUSES) {
  const input = h('input', { testid: `filter-status-${status}`, attrs: { type: 'checkbox', name: 'status', value: status } });
  els.statusOptions.append(h('label', { className: `chip chip-${status}` }, [input, h('span', { text: statusLabel(status) })]));
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let filterTimer;
const reloadSoon = (delay = 250) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => void list.load('reset'), delay);
};
els.statusOptions.addEventListener('change', () => reloadSoon(0));
els.nameFilter.addEventListener('input', () => reloadSoon());
els.filters.addEventListener('submit', (event) => {
  event.preventDefault();
  reloadSoon(0);
});
els.filters.addEventListener('reset', () => reloadSoon(0));

els.openForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void openById(els.openId.value.trim());
});

/**
 * The search box: a job id (or a URL holding one) opens that job; a tail of an id opens the one
 * listed job it ends.
 * @param {string} text
 */
async function openById(text) {
  if (!text) return;
  showError(els.openError, undefined);
  const full = UUID.exec(text)?.[0]?.toLowerCase();
  if (!full) {
    const tail = text.replace(/^…/, '').toLowerCase();
    const hits = [...list.jobs.keys()].filter((id) => id.endsWith(tail));
    if (hits.length === 1 && hits[0]) {
      location.hash = `#/jobs/${hits[0]}`;
      return;
    }
    showError(els.openError, `"${text}" is not a job id. Paste the full id (like 01a208c4-03be-78e4-807a-e431693e3473).`);
    return;
  }
  try {
    await api(`/jobs/${encodeURIComponent(full)}`, { signal: session.signal });
    els.openId.value = '';
    location.hash = `#/jobs/${full}`;
  } catch (error) {
    if (error instanceof AuthError || isAbort(error)) return;
    if (error instanceof ApiError && error.status === 404) showError(els.openError, `No job with id ${full}. ${error.problem.detail ?? ''}`.trim());
    else showError(els.openError, `Could not open the job: ${describe(error)}`);
  }
}

// Relative times ("12s ago") age in place.
setInterval(() => {
  for (const element of document.querySelectorAll('time[data-relative]')) {
    const time = /** @type {HTMLTimeElement} */ (element);
    time.textContent = relativeTime(time.dateTime);
  }
}, 5000);
