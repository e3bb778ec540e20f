// @ts-check
/** Widgets the list and the detail share: the status badge and the progress bar. */
import { h, statusLabel } from './helpers.js';

/** @typedef {import('./types.js').JobSummary} JobSummary */

/**
 * A status badge.
 * @param {string} status
 * @param {string} [testid]
 */
export function badge(status, testid) {
  return h('span', { className: `badge status-${status}`, text: statusLabel(status), testid });
}

/**
 * Renders a progress bar (`.progress > .progress-fill`) for a job.
 * @param {HTMLElement} bar
 * @param {JobSummary} job
 */
export function paintProgress(bar, job) {
  const percent = progressPercent(job);
  const fill = /** @type {HTMLElement | null} */ (bar.firstElementChild);
  bar.dataset.status = job.status;
  bar.classList.toggle('indeterminate', percent === undefined && job.status === 'running');
  if (percent === undefined) bar.removeAttribute('aria-valuenow');
  else bar.setAttribute('aria-valuenow', String(percent));
  // CSSOM (not a style attribute), which the page's Content-Security-Policy allows.
  if (fill) fill.style.width = `${percent ?? 0}%`;
}

/**
 * The percent to draw: the reported one, 100 once completed, none when nothing was reported.
 * @param {JobSummary} job
 * @returns {number | undefined}
 */
export function progressPercent(job) {
  if (job.status === 'completed') return 100;
  const percent = job.progress?.percent;
  return typeof percent === 'number' && Number.isFinite(percent) ? Math.max(0, Math.min(100, Math.round(percent))) : undefined;
}

/** @param {JobSummary} job */
export function progressNote(job) {
  const p = job.progress;
  return [p?.stage, p?.message].filter((part) => typeof part === 'string' && part !== '').join(' · ');
}