import type { UseJobResult } from '../../../src/react/index.ts';
import type { RiskAssessment, RiskEstimate, RiskScanInput, RiskScanResult } from '../jobs.ts';
import { QUESTIONS, SECTION_TITLES } from '../questions.ts';
import { describeError } from './api.ts';
import { Markdown } from './Markdown.tsx';

/**
 * The right-hand side: nothing yet; the instant estimate with progress and the AI text
 * streaming in; then the AI assessment in the estimate's place. Or cancelled, or an error.
 */
export function AssessmentPanel({ pending, jobId, job }: { pending: boolean; jobId: string | undefined; job: UseJobResult<RiskScanResult> }) {
  if (!jobId) {
    return (
      <section className="card" data-testid="panel">
        <h2>Assessment</h2>
        {pending ? (
          <p className="placeholder" data-testid="submitting">
            Submitting the questionnaire…
          </p>
        ) : (
          <p className="placeholder" data-testid="empty">
            Answer the questionnaire and run the scan. An instant estimate appears at once; the AI assessment replaces it as soon as it is written.
          </p>
        )}
      </section>
    );
  }

  const status = job.status ?? 'queued';
  const input = job.job?.input as RiskScanInput | undefined;
  const ai = job.result?.kind === 'ai' ? job.result : undefined;
  const estimate = job.fallback?.kind === 'estimate' ? job.fallback : undefined;
  const active = !job.isDone && !job.error;
  const percent = Math.max(0, Math.min(100, Math.round(job.progress?.percent ?? 0)));

  return (
    <section className="card" data-testid="panel" data-job-id={jobId}>
      <div className="panel-head">
        <div>
          <h2>{input ? `Assessment for ${input.company}` : 'Assessment'}</h2>
          <div className="meta">
            Job <code data-testid="job-id">{jobId}</code>
          </div>
        </div>
        <span className={`badge ${status}`} data-testid="job-status" data-status={status}>
          {status.replace('_', ' ')}
        </span>
      </div>

      {job.error && (
        <p className="alert" role="alert" data-testid="error">
          {describeError(job.error)}
        </p>
      )}
      {status === 'cancelled' && (
        <p className="notice" data-testid="cancelled">
          Cancelled — the AI assessment was stopped. The instant estimate below is all there is for this run.
        </p>
      )}

      {active && (
        <div className="progress" data-testid="progress" data-percent={percent} role="progressbar" aria-valuenow={percent} aria-valuemin={0} aria-valuemax={100}>
          <div className="bar">
            <div style={{ width: `${Math.max(percent, 3)}%` }} />
          </div>
          <div className="label">
            <span data-testid="progress-stage">{job.progress?.message ?? (status === 'queued' ? 'Waiting for a worker' : 'Starting')}</span>
            <span data-testid="progress-percent">{percent}%</span>
          </div>
        </div>
      )}

      {ai ? (
        <AiCard value={ai} />
      ) : (
        <>
          {estimate && <EstimateCard value={estimate} status={status} />}
          {job.partial && !job.isDone && (
            <div className="stream" data-testid="ai-stream" aria-live="polite">
              <Markdown text={job.partial} />
              <span className="caret" />
            </div>
          )}
          {status === 'completed' && !ai && <p className="placeholder">Fetching the AI assessment…</p>}
        </>
      )}

      {active && (
        <div className="actions">
          <button className="secondary" type="button" data-testid="cancel" onClick={() => void job.cancel()}>
            Cancel
          </button>
        </div>
      )}
    </section>
  );
}

function kicker(status: string): string {
  if (status === 'cancelled') return 'Instant estimate';
  if (status === 'failed' || status === 'timed_out') return 'Instant estimate — the AI assessment could not be written';
  return 'Instant estimate — the AI assessment is on its way';
}

function EstimateCard({ value, status }: { value: RiskEstimate; status: string }) {
  return (
    <article className="result-card estimate" data-testid="fallback">
      <div className="kicker">{kicker(status)}</div>
      <div className="score">
        <strong>{value.score}</strong>
        <span>/ 100 risk</span>
        <span className={`level ${value.level}`}>{value.level}</span>
      </div>
      <ul className="findings">
        {value.findings.map((f) => (
          <li key={f.id}>
            <span className={`sev ${f.severity}`}>{f.severity}</span>
            <strong>{f.control}</strong> — {f.fix}.
          </li>
        ))}
      </ul>
      <p className="meta">
        Rule-based: {value.gaps} of {QUESTIONS.length} controls missing or partial. Computed instantly, without AI.
      </p>
    </article>
  );
}

function AiCard({ value }: { value: RiskAssessment }) {
  return (
    <article className="result-card ai" data-testid="ai-result">
      <div className="kicker">AI assessment</div>
      <div className="score">
        <strong>{value.score}</strong>
        <span>/ 100 risk</span>
        <span className={`level ${value.level}`}>{value.level}</span>
      </div>
      {(Object.keys(SECTION_TITLES) as Array<keyof typeof SECTION_TITLES>).map((key) => (
        <section key={key} data-testid={`ai-section-${key}`}>
          <Markdown text={`## ${SECTION_TITLES[key]}\n${value.sections[key]}`} />
        </section>
      ))}
      <p className="meta">Written by {value.model}.</p>
    </article>
  );
}
