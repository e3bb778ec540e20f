import { useJob, useSubmitJob } from '../../../src/react/index.ts';
import type { RiskScanInput, RiskScanResult } from '../jobs.ts';
import { type Answers, ANSWERS, QUESTIONS } from '../questions.ts';
import { describeError, postScan } from './api.ts';
import { AssessmentPanel } from './AssessmentPanel.tsx';

export interface FormValues {
  company: string;
  sector: string;
  answers: Answers;
}

/**
 * One company's questionnaire and its assessment. The component stays mounted across tab
 * switches; `subject` changes, and with it the persisted job it shows.
 */
export function Workspace({ subject, values, onChange }: { subject: string; values: FormValues; onChange: (values: FormValues) => void }) {
  // One job per company, kept in sessionStorage: a reload, or coming back to the tab, resumes it.
  const scan = useSubmitJob<RiskScanInput, RiskScanResult>('risk-scan', { submit: postScan, persist: { key: `risk-scan:${subject}` } });
  // `subject` binds the job to its company: should this view ever render a job for another
  // company than the one it was submitted for, its result is not applied.
  const job = useJob<RiskScanResult>(scan.jobId, { baseUrl: '/api', token: scan.token, initial: scan.job, subject });

  const running = scan.jobId !== undefined && !job.isDone && !job.error;
  const locked = scan.pending || running;
  const submit = () => {
    const input: RiskScanInput = { company: values.company, answers: values.answers, ...(values.sector.trim() ? { sector: values.sector } : {}) };
    void scan.submit(input, { subject });
  };
  const label = scan.pending ? 'Submitting…' : running ? 'Scan running…' : scan.jobId ? 'Run a new scan' : 'Run risk scan';

  return (
    <div className="workspace" data-testid="workspace" data-subject={subject}>
      <form
        className="card questionnaire"
        data-testid="questionnaire"
        onSubmit={(event) => {
          event.preventDefault();
          submit();
        }}
      >
        <h2>Security questionnaire</h2>
        <fieldset disabled={locked}>
          <label className="field">
            Company
            <input data-testid="company" value={values.company} onChange={(e) => onChange({ ...values, company: e.target.value })} />
          </label>
          <label className="field">
            What it does (optional)
            <input value={values.sector} onChange={(e) => onChange({ ...values, sector: e.target.value })} />
          </label>
          <ol className="questions">
            {QUESTIONS.map((q) => (
              <li key={q.id}>
                <span>{q.text}</span>
                <span className="choice" role="radiogroup" aria-label={q.control}>
                  {ANSWERS.map((a) => (
                    <label key={a}>
                      <input
                        type="radio"
                        name={`${subject}-${q.id}`}
                        value={a}
                        checked={values.answers[q.id] === a}
                        onChange={() => onChange({ ...values, answers: { ...values.answers, [q.id]: a } })}
                      />
                      {a}
                    </label>
                  ))}
                </span>
              </li>
            ))}
          </ol>
        </fieldset>
        <div className="actions">
          <button className="primary" type="submit" data-testid="submit" disabled={locked}>
            {label}
          </button>
          {scan.jobId && !running && (
            <button className="secondary" type="button" data-testid="start-over" onClick={scan.reset}>
              Start over
            </button>
          )}
        </div>
        {scan.error && (
          <p className="alert" role="alert" data-testid="submit-error">
            {describeError(scan.error)}
          </p>
        )}
      </form>
      <AssessmentPanel pending={scan.pending} jobId={scan.jobId} job={job} />
    </div>
  );
}
