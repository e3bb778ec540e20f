// @ts-check
/** The detail of one job: its view, its event log (live), its deliveries (polled), its actions. */
import { foldJobEvent, parseJobEvent } from '../contract/job-events.ts';
import { isTerminal, RECOVERABLE_STATUSES } from '../contract/statuses.ts';
import { api, ApiError, AuthError, describe, follow, isAbort } from './api.js';
import { absoluteTime, asJob, byId, clockTime, copy, h, isRecord, preview, pretty, relativeTime, showError, sleep, statusLabel, timeElement } from './helpers.js';
import { list } from './list.js';
import { badge, paintProgress, progressNote, progressPercent } from './widgets.js';

/** @typedef {import('./types.js').JobStatus} JobStatus */
/** @typedef {import('./types.js').JobSummary} JobSummary */
/** @typedef {import('./types.js').JobView} JobView */
/** @typedef {import('./types.js').Delivery} Delivery */
/** @typedef {import('../job/model.ts').JobEvent} JobEvent */

const detailEls = {
  error: byId('detail-error'),
  body: byId('detail-body'),
  name: byId('detail-title'),
  status: byId('detail-status'),
  id: byId('detail-id'),
  copyId: /** @type {HTMLButtonElement} */ (byId('copy-id')),
  actions: byId('detail-actions'),
  confirm: byId('confirm'),
  confirmText: byId('confirm-text'),
  confirmYes: /** @type {HTMLButtonElement} */ (byId('confirm-yes')),
  confirmNo: /** @type {HTMLButtonElement} */ (byId('confirm-no')),
  actionError: byId('action-error'),
  progress: byId('detail-progress'),
  progressText: byId('detail-progress-text'),
  facts: byId('detail-facts'),
  errorCard: byId('error-card'),
  errorMessage: byId('error-message'),
  errorMeta: byId('error-meta'),
  errorDetails: byId('error-details'),
  resultCard: byId('result-card'),
  resultTitle: byId('result-title'),
  resultJson: byId('result-json'),
  output: byId('output'),
  outputSize: byId('output-size'),
  input: byId('input-json'),
  logs: /** @type {HTMLOListElement} */ (byId('logs')),
  logsCount: byId('logs-count'),
  timelineBody: /** @type {HTMLTableSectionElement} */ (byId('timeline-body')),
  timelineCount: byId('timeline-count'),
  deliveries: byId('deliveries'),
  deliveriesError: byId('deliveries-error'),
};

/**
 * @typedef {object} ActionSpec
 * @property {'cancel' | 'recover'} kind
 * @property {string} label
 * @property {string} question
 * @property {string} confirm
 */

/**
 * What can be done to a job in this status.
 * @param {JobStatus} status
 * @returns {ActionSpec[]}
 */
function actionsFor(status) {
  /** @type {ActionSpec[]} */
  const actions = [];
  if (status === 'queued' || status === 'running') {
    actions.push({ kind: 'cancel', label: 'Cancel', question: 'Cancel this job? A running handler is aborted and its late result discarded.', confirm: 'Cancel job' });
  }
  if (status === 'running') {
    actions.push({
      kind: 'recover',
      label: 'Stuck? Recover',
      question: 'Recover this running job? Its current worker is fenced out and the job goes back to the queue with a fresh attempt budget.',
      confirm: 'Recover job',
    });
  }
  // A running job was offered above, as stuck; the others are recovered as they ended.
  if (status !== 'running' && /** @type {readonly string[]} */ (RECOVERABLE_STATUSES).includes(status)) {
    actions.push({ kind: 'recover', label: 'Recover', question: 'Send this job back to the queue with a fresh attempt budget? Its history is kept.', confirm: 'Recover job' });
  }
  return actions;
}

/**
 * Summarises one event for the timeline: the words, and an error line if there is one.
 * @param {JobEvent} event
 * @returns {{ text: string, error?: string, tone?: string }}
 */
function summarise(event) {
  const d = event.data;
  const str = (/** @type {unknown} */ v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
  const errorOf = (/** @type {unknown} */ e) => (isRecord(e) ? str(/** @type {Record<string, unknown>} */ (e).message) || preview(e) : undefined);
  if (event.type === 'output') {
    const text = str(d.text);
    return { text: `+${text.length} chars “${text.length > 60 ? `${text.slice(0, 59)}…` : text}”` };
  }
  if (event.type === 'progress') {
    const percent = typeof d.percent === 'number' ? `${Math.round(d.percent)}%` : '';
    return { text: [percent, str(d.stage), str(d.message)].filter(Boolean).join(' · ') || preview(d) };
  }
  if (event.type === 'log') return { text: `${str(d.level)}: ${str(d.message)}`, tone: d.level === 'error' ? 'failed' : undefined };
  if (event.type === 'step') {
    const took = typeof d.durationMs === 'number' ? ` in ${Math.round(d.durationMs)} ms` : '';
    return { text: `step “${str(d.name)}” ${str(d.status)}${took}`, error: typeof d.error === 'string' ? d.error : undefined };
  }
  if (event.type !== 'status') return { text: preview(d) };
  const status = str(d.status);
  const attempt = str(d.attempt);
  if (status === 'queued') {
    if (d.recovered === true) return { text: `recovered from ${statusLabel(str(d.from) || 'unknown')} → queued, fresh attempt budget`, tone: 'recovered' };
    if (d.reason === 'retry') return { text: `attempt ${attempt} failed; retry scheduled${d.runAt ? ` for ${clockTime(str(d.runAt))}` : ''}`, error: errorOf(d.error), tone: 'retry' };
    if (d.reason === 'lease_expired') return { text: `attempt ${attempt}: the worker's lease expired; queued again`, error: errorOf(d.error), tone: 'retry' };
    if (d.reason === 'worker_shutdown') return { text: `attempt ${attempt}: handed back on worker shutdown; queued again`, tone: 'retry' };
    if (d.reason) return { text: `queued again (${str(d.reason)})`, error: errorOf(d.error) };
    return { text: 'submitted, queued' };
  }
  if (status === 'running') return { text: `running, attempt ${attempt}` };
  if (status === 'completed') return { text: `completed${attempt ? ` on attempt ${attempt}` : ''}${d.result !== undefined ? ` → ${preview(d.result, 60)}` : ''}`, tone: 'completed' };
  return { text: `${statusLabel(status)}${attempt ? ` on attempt ${attempt}` : ''}`, error: errorOf(d.error), tone: status };
}

/** The open job: its view, its event log (live), its deliveries (polled), its actions. */
class JobDetail {
  /** @param {string} id */
  constructor(id) {
    this.id = id;
    this.controller = new AbortController();
    /** @type {JobView | undefined} */
    this.job = undefined;
    /** Version of the first view fetched: the event replay is complete once past it. */
    this.firstVersion = 0;
    this.lastSeq = 0;
    /**
     * The job as its event log alone tells it (folded from the first event): its `output` is
     * the current attempt's, complete once the replay passed the first view.
     * @type {import('../contract/job-events.ts').FoldedJob}
     */
    this.log = { status: 'queued', done: false, attempt: 0, output: '', version: 0, updatedAt: '' };
    this.streaming = false;
    this.deliveriesJson = '';
    this.fastPollUntil = 0;
    /** @type {() => void} */
    this.wakePoll = () => {};
    /** @type {ActionSpec | undefined} */
    this.pending = undefined;
    this.busy = false;
    this.shownActions = '';
    this.renderScheduled = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.refetchTimer = undefined;
  }

  get signal() {
    return this.controller.signal;
  }

  close() {
    this.controller.abort();
    clearTimeout(this.refetchTimer);
  }

  async open() {
    showError(detailEls.error, undefined);
    detailEls.body.hidden = true;
    detailEls.timelineBody.replaceChildren();
    detailEls.deliveries.replaceChildren();
    detailEls.output.textContent = '';
    detailEls.logs.replaceChildren();
    detailEls.logsCount.textContent = '';
    showError(detailEls.actionError, undefined);
    showError(detailEls.deliveriesError, undefined);
    this.hideConfirm();
    try {
      /** @type {JobView} */
      const job = await api(`/jobs/${encodeURIComponent(this.id)}`, { signal: this.signal });
      this.job = job;
      this.firstVersion = job.version;
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      const message = error instanceof ApiError && error.status === 404 ? `No job with id ${this.id}. ${error.problem.detail ?? ''}` : `Could not load the job: ${describe(error)}`;
      showError(detailEls.error, message.trim());
      return;
    }
    detailEls.input.textContent = pretty(this.job.input);
    detailEls.body.hidden = false;
    this.render();
    // Screen readers follow the view change: the job's name is the new heading.
    detailEls.name.focus({ preventScroll: true });
    void this.followEvents();
    void this.pollDeliveries();
  }

  /** After the tenant stream reconnected: catch up on the view and make sure events flow. */
  resync() {
    this.scheduleRefetch(0);
    if (this.job && !this.streaming && !isTerminal(this.job.status)) void this.followEvents();
  }

  /**
   * Takes a newer view of the job (from a refetch or an action's answer).
   * @param {JobView} view
   */
  applyView(view) {
    if (this.job && view.version < this.job.version) return;
    this.job = view;
    list.upsert(view, 'stream');
    this.scheduleRender();
    if (!this.streaming && view.version > this.lastSeq) void this.followEvents();
  }

  /**
   * Takes a summary from the tenant stream: everything but input, output, result and fallback.
   * @param {JobSummary} summary
   */
  applySummary(summary) {
    if (!this.job || summary.version <= this.job.version) return;
    const statusChanged = summary.status !== this.job.status;
    this.job = { ...summary, input: this.job.input, output: this.job.output, result: this.job.result, fallback: this.job.fallback };
    if (statusChanged) this.scheduleRefetch();
    this.scheduleRender();
    if (!this.streaming && summary.version > this.lastSeq) void this.followEvents();
  }

  /** Re-reads the full view soon (result, fallback and error come with status changes). */
  scheduleRefetch(delay = 120) {
    clearTimeout(this.refetchTimer);
    this.refetchTimer = setTimeout(() => {
      void api(`/jobs/${encodeURIComponent(this.id)}`, { signal: this.signal }).then(
        (view) => {
          const job = asJob(view);
          if (job) this.applyView(job);
        },
        () => {},
      );
    }, delay);
  }

  /** Streams the job's events from the last one seen, until the job is done and all are here. */
  async followEvents() {
    if (this.streaming || this.signal.aborted) return;
    this.streaming = true;
    let failed = false;
    try {
      await follow({
        path: () => `/jobs/${encodeURIComponent(this.id)}/events?after=${this.lastSeq}`,
        signal: this.signal,
        stopOn404: true,
        onMessage: (message) => {
          const event = parseJobEvent(message.data, message.id);
          if (event) this.onEvent(event);
        },
      });
    } catch (error) {
      failed = true;
      if (!isAbort(error)) showError(detailEls.actionError, `The event stream stopped: ${describe(error)}`);
    } finally {
      this.streaming = false;
    }
    // A change that landed while the stream was closing (e.g. a recovery) reopens it.
    if (!failed && !this.signal.aborted && this.job && this.job.version > this.lastSeq) void this.followEvents();
  }

  /** @param {JobEvent} event */
  onEvent(event) {
    if (event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    this.appendTimeline(event);
    if (event.type === 'log') this.appendLogLine(event);
    this.log = foldJobEvent(this.log, event);
    const job = this.job;
    // The view moves on only with events newer than it (a refetch or a summary may be ahead).
    if (job && event.seq > job.version && event.type !== 'output') {
      this.job = /** @type {JobView} */ (foldJobEvent({ ...job, output: job.output ?? '' }, event));
    }
    if (event.type === 'status') {
      if (event.seq > this.firstVersion) this.scheduleRefetch();
      if (isTerminal(this.log.status) && event.seq > this.firstVersion) this.pollFast(5000);
    }
    this.scheduleRender();
  }

  /** @param {JobEvent} event */
  appendTimeline(event) {
    const { text, error, tone } = summarise(event);
    const what = h('td', { className: 'tl-what' }, [h('span', { text })]);
    if (error) what.append(h('div', { className: 'tl-error', text: error }));
    const row = h('tr', { testid: 'timeline-event', className: tone ? `tone-${tone}` : '' }, [
      h('td', { className: 'mono muted', text: String(event.seq) }),
      h('td', { className: 'mono' }, [h('time', { text: clockTime(event.at), title: absoluteTime(event.at), attrs: { datetime: event.at } })]),
      h('td', {}, [h('span', { className: `tl-type tl-${event.type}`, text: event.type === 'status' ? String(event.data.status) : event.type })]),
      what,
    ]);
    row.dataset.seq = String(event.seq);
    row.dataset.type = event.type;
    if (event.type === 'status') row.dataset.status = String(event.data.status);
    if (event.data.recovered === true) row.dataset.recovered = 'true';
    const wrap = /** @type {HTMLElement} */ (detailEls.timelineBody.closest('.timeline-wrap'));
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 24;
    detailEls.timelineBody.append(row);
    detailEls.timelineCount.textContent = `${detailEls.timelineBody.rows.length} events`;
    if (atBottom) wrap.scrollTop = wrap.scrollHeight;
  }

  /**
   * One line of the job's own log (`ctx.log`), as its `log` event carries it.
   * @param {JobEvent} event
   */
  appendLogLine(event) {
    const d = event.data;
    const level = typeof d.level === 'string' ? d.level : 'info';
    const parts = [
      h('time', { className: 'log-meta', text: clockTime(event.at), title: absoluteTime(event.at), attrs: { datetime: event.at } }),
      h('span', { className: 'log-meta', text: `#${typeof d.attempt === 'number' ? d.attempt : '?'}`, title: 'attempt' }),
      h('span', { className: 'log-level', text: level }),
      h('span', { className: 'log-message', text: typeof d.message === 'string' ? d.message : '' }),
    ];
    if (d.data !== undefined) parts.push(h('span', { className: 'log-data', text: preview(d.data, 200) }));
    const line = h('li', { testid: 'log-line', className: `log-${level}` }, parts);
    line.dataset.level = level;
    const list = detailEls.logs;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    list.append(line);
    detailEls.logsCount.textContent = `${list.children.length} lines`;
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  scheduleRender() {
    if (this.renderScheduled) return;
    this.renderScheduled = true;
    requestAnimationFrame(() => {
      this.renderScheduled = false;
      if (!this.signal.aborted) this.render();
    });
  }

  render() {
    const job = this.job;
    if (!job) return;
    document.title = `${job.name} · ${statusLabel(job.status)} · Waitless`;
    detailEls.name.textContent = job.name;
    detailEls.status.textContent = statusLabel(job.status);
    detailEls.status.className = `badge status-${job.status}`;
    detailEls.status.dataset.status = job.status;
    detailEls.id.textContent = job.id;

    paintProgress(detailEls.progress, job);
    const percent = progressPercent(job);
    detailEls.progressText.textContent = [percent === undefined ? '' : `${percent}%`, progressNote(job)].filter(Boolean).join(' · ') || (job.status === 'queued' ? 'waiting for a worker' : '');

    /** @type {Array<[string, Node | string]>} */
    const facts = [
      ['Status', badge(job.status)],
      ['Attempt', `${job.attempt} of ${job.maxAttempts}`],
      ['Created', timeWithExact(job.createdAt)],
      ['Started', job.startedAt ? timeWithExact(job.startedAt) : '—'],
      ['Finished', job.finishedAt ? timeWithExact(job.finishedAt) : '—'],
      ['Updated', timeWithExact(job.updatedAt)],
    ];
    if (job.status === 'queued' && Date.parse(job.runAt) > Date.now() + 1000) facts.push(['Runs', timeWithExact(job.runAt)]);
    if (job.priority) facts.push(['Priority', String(job.priority)]);
    if (job.supersedeKey) facts.push(['Key', job.supersedeKey]);
    if (job.concurrency) facts.push(['Limit', `${job.concurrency.limit} at once for “${job.concurrency.key}”`]);
    if (job.usage) facts.push(['Tokens', `${job.usage.totalTokens} (${job.usage.promptTokens} in, ${job.usage.completionTokens} out)`]);
    if (job.steps?.length) {
      const steps = job.steps.map((step) => {
        const took = step.durationMs === undefined ? '' : ` ${Math.round(step.durationMs)} ms`;
        return h('li', { text: `${step.name}: ${step.status}${took} (attempt ${step.attempt})${step.error ? ` — ${step.error}` : ''}` });
      });
      facts.push(['Steps', h('ul', { className: 'steps' }, steps)]);
    }
    facts.push(['Version', String(job.version)]);
    detailEls.facts.replaceChildren(...facts.flatMap(([term, value]) => [h('dt', { text: term }), h('dd', { testid: `fact-${term.toLowerCase()}` }, [value])]));

    const error = job.error;
    detailEls.errorCard.hidden = !error || job.status === 'completed';
    if (error) {
      const { message, code, name, ...rest } = error;
      detailEls.errorMessage.textContent = typeof message === 'string' ? message : 'No message.';
      detailEls.errorMeta.textContent = [code ? `code ${String(code)}` : '', name ? `name ${String(name)}` : ''].filter(Boolean).join(' · ');
      detailEls.errorDetails.hidden = Object.keys(rest).length === 0;
      detailEls.errorDetails.textContent = pretty(rest);
    }

    if (job.status === 'completed' && 'result' in job) {
      detailEls.resultCard.hidden = false;
      detailEls.resultCard.classList.remove('provisional');
      detailEls.resultTitle.replaceChildren('Result');
      detailEls.resultJson.textContent = pretty(job.result);
    } else if (job.fallback) {
      detailEls.resultCard.hidden = false;
      detailEls.resultCard.classList.add('provisional');
      detailEls.resultTitle.replaceChildren('Fallback result ', h('span', { className: 'badge provisional', text: 'provisional', testid: 'provisional' }));
      detailEls.resultJson.textContent = pretty(job.fallback.result);
    } else {
      detailEls.resultCard.hidden = true;
    }

    const output = this.lastSeq >= this.firstVersion ? this.log.output : (job.output ?? '');
    if (detailEls.output.textContent !== output) {
      const pre = detailEls.output;
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      pre.textContent = output;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    detailEls.output.classList.toggle('is-empty', output === '');
    detailEls.outputSize.textContent = output ? `${output.length} chars${job.done ? '' : ', growing'}` : job.done ? 'none' : 'none yet';

    this.renderActions();
  }

  renderActions() {
    const job = this.job;
    if (!job) return;
    const actions = actionsFor(job.status);
    const key = `${actions.map((a) => a.label).join('|')}|${this.busy}`;
    if (this.pending && !actions.some((a) => a.kind === this.pending?.kind)) this.hideConfirm();
    if (key === this.shownActions) return;
    this.shownActions = key;
    detailEls.actions.replaceChildren(
      ...actions.map((action) => {
        // Recovering a running job is the unusual move: offered, not pushed.
        const style = action.kind === 'cancel' ? 'danger-outline' : job.status === 'running' ? '' : 'primary';
        const button = h('button', { className: style, text: action.label, testid: `action-${action.kind}`, attrs: { type: 'button' } });
        button.disabled = this.busy;
        button.addEventListener('click', () => this.askConfirm(action));
        return button;
      }),
    );
  }

  /** @param {ActionSpec} action */
  askConfirm(action) {
    this.pending = action;
    showError(detailEls.actionError, undefined);
    detailEls.confirmText.textContent = action.question;
    detailEls.confirmYes.textContent = action.confirm;
    detailEls.confirmYes.className = action.kind === 'cancel' ? 'danger' : 'primary';
    detailEls.confirmYes.disabled = false;
    detailEls.confirm.hidden = false;
    detailEls.confirmYes.focus();
  }

  hideConfirm() {
    this.pending = undefined;
    detailEls.confirm.hidden = true;
  }

  async confirm() {
    const action = this.pending;
    if (!action || this.busy) return;
    this.busy = true;
    detailEls.confirmYes.disabled = true;
    this.renderActions();
    try {
      /** @type {JobView} */
      const view = await api(`/jobs/${encodeURIComponent(this.id)}/${action.kind}`, { method: 'POST', signal: this.signal });
      this.hideConfirm();
      this.applyView(view);
      this.pollFast(4000);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      this.hideConfirm();
      showError(detailEls.actionError, `${action.kind === 'cancel' ? 'Cancel' : 'Recover'} failed: ${describe(error)}`);
    } finally {
      this.busy = false;
      this.renderActions();
    }
  }

  /** @param {number} ms poll deliveries every 400 ms for this long */
  pollFast(ms) {
    this.fastPollUntil = Math.max(this.fastPollUntil, Date.now() + ms);
    this.wakePoll();
  }

  /** Polls the job's webhook deliveries while the detail is open (faster right after actions). */
  async pollDeliveries() {
    while (!this.signal.aborted) {
      if (!document.hidden) await this.loadDeliveries();
      const fast = Date.now() < this.fastPollUntil;
      const wake = new AbortController();
      this.wakePoll = () => wake.abort();
      await sleep(fast ? 400 : 2500, AbortSignal.any([this.signal, wake.signal]));
    }
  }

  async loadDeliveries() {
    try {
      /** @type {{ deliveries: Delivery[] }} */
      const answer = await api(`/jobs/${encodeURIComponent(this.id)}/deliveries`, { signal: this.signal });
      showError(detailEls.deliveriesError, undefined);
      const json = JSON.stringify(answer.deliveries);
      if (json === this.deliveriesJson) return;
      this.deliveriesJson = json;
      this.renderDeliveries(answer.deliveries);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      showError(detailEls.deliveriesError, `Could not load the deliveries: ${describe(error)}`);
    }
  }

  /** @param {Delivery[]} deliveries */
  renderDeliveries(deliveries) {
    if (deliveries.length === 0) {
      detailEls.deliveries.replaceChildren(h('p', { className: 'muted', text: 'No webhook deliveries for this job. They are written when it ends (or reports progress to an endpoint that asked for it).' }));
      return;
    }
    detailEls.deliveries.replaceChildren(...deliveries.map((delivery) => this.deliveryElement(delivery)));
  }

  /** @param {Delivery} delivery */
  deliveryElement(delivery) {
    const redeliver = h('button', { className: 'small', text: 'Redeliver', testid: 'redeliver', attrs: { type: 'button' } });
    redeliver.addEventListener('click', () => void this.redeliver(delivery, redeliver));
    const facts = [`webhook-id ${delivery.id}`, `created ${relativeTime(delivery.createdAt)}`];
    if (delivery.deliveredAt) facts.push(`delivered ${relativeTime(delivery.deliveredAt)}`);
    if (delivery.status === 'pending' && delivery.nextAttemptAt) facts.push(`next attempt ${relativeTime(delivery.nextAttemptAt)}`);
    const attempts =
      delivery.attempts.length === 0
        ? h('p', { className: 'muted', text: 'No attempt yet.' })
        : h('table', { className: 'attempts' }, [
            h('thead', {}, [h('tr', {}, [h('th', { text: '#', attrs: { scope: 'col' } }), h('th', { text: 'Time', attrs: { scope: 'col' } }), h('th', { text: 'Outcome', attrs: { scope: 'col' } }), h('th', { text: 'Duration', attrs: { scope: 'col' } })])]),
            h(
              'tbody',
              {},
              delivery.attempts.map((attempt) => {
                const ok = attempt.statusCode !== undefined && attempt.statusCode >= 200 && attempt.statusCode < 300;
                const outcome = attempt.statusCode !== undefined ? `HTTP ${attempt.statusCode}` : (attempt.error ?? 'no answer');
                const outcomeCell = h('td', { className: ok ? 'ok' : 'bad' }, [h('span', { text: outcome })]);
                if (attempt.statusCode !== undefined && attempt.error) outcomeCell.append(h('div', { className: 'tl-error', text: attempt.error }));
                if (attempt.responseExcerpt) outcomeCell.title = attempt.responseExcerpt;
                const row = h('tr', { testid: 'delivery-attempt' }, [
                  h('td', { className: 'mono muted', text: String(attempt.n) }),
                  h('td', { className: 'mono' }, [h('time', { text: clockTime(attempt.startedAt), title: absoluteTime(attempt.startedAt), attrs: { datetime: attempt.startedAt } })]),
                  outcomeCell,
                  h('td', { className: 'mono', text: `${attempt.latencyMs} ms` }),
                ]);
                row.dataset.n = String(attempt.n);
                return row;
              }),
            ),
          ]);
    const article = h('article', { className: 'delivery', testid: 'delivery' }, [
      h('div', { className: 'delivery-head' }, [
        h('span', { className: 'badge event', text: delivery.eventType, testid: 'delivery-event' }),
        badge(delivery.status, 'delivery-status'),
        h('code', { className: 'delivery-url', text: delivery.url, title: delivery.url }),
        redeliver,
      ]),
      h('p', { className: 'muted small-text mono-ish', text: facts.join(' · ') }),
      ...(delivery.lastError && delivery.status !== 'succeeded' ? [h('p', { className: 'tl-error', text: delivery.lastError })] : []),
      attempts,
    ]);
    article.dataset.deliveryId = delivery.id;
    article.dataset.status = delivery.status;
    article.dataset.attempts = String(delivery.attempts.length);
    return article;
  }

  /**
   * @param {Delivery} delivery
   * @param {HTMLButtonElement} button
   */
  async redeliver(delivery, button) {
    button.disabled = true;
    button.textContent = 'Redelivering…';
    showError(detailEls.deliveriesError, undefined);
    try {
      await api(`/deliveries/${encodeURIComponent(delivery.id)}/redeliver`, { method: 'POST', signal: this.signal });
      this.deliveriesJson = ''; // redraw even if nothing changed yet, to restore the button
      this.pollFast(6000);
    } catch (error) {
      if (error instanceof AuthError || isAbort(error)) return;
      button.disabled = false;
      button.textContent = 'Redeliver';
      showError(detailEls.deliveriesError, `Redeliver failed: ${describe(error)}`);
    }
  }
}

/**
 * A relative time with the exact one beside it.
 * @param {string} iso
 */
function timeWithExact(iso) {
  const wrap = h('span', {}, [timeElement(iso)]);
  wrap.append(h('span', { className: 'muted exact', text: ` ${absoluteTime(iso)}` }));
  return wrap;
}

detailEls.confirmYes.addEventListener('click', () => void detail?.confirm());
detailEls.confirmNo.addEventListener('click', () => detail?.hideConfirm());
detailEls.copyId.addEventListener('click', () => {
  if (detail) void copy(detail.id, detailEls.copyId);
});

/** @type {JobDetail | undefined} */
let detail;

/** The job shown, if any. */
export function openDetail() {
  return detail;
}

/**
 * Shows the job with this id (kept open when it is already the one shown).
 * @param {string} id
 */
export function showDetail(id) {
  if (detail?.id === id) return;
  closeDetail();
  detail = new JobDetail(id);
  void detail.open();
  window.scrollTo(0, 0);
}

export function closeDetail() {
  detail?.close();
  detail = undefined;
}
