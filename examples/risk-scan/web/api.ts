/** The page's calls to its own backend. */
import { WaitlessApiError } from '../../../src/react/index.ts';
import type { SubmittedJob } from '../../../src/react/index.ts';
import type { RiskScanInput, RiskScanResult } from '../jobs.ts';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason as Error)), { once: true });
  });

/**
 * `POST /scan` with the intent's Idempotency-Key. A network error, a 5xx or a 429 is tried again
 * (twice) with the same key: if the first try did create the job, the retry gets that job back.
 */
export async function postScan(
  input: RiskScanInput,
  { idempotencyKey, signal }: { idempotencyKey: string; signal: AbortSignal },
): Promise<SubmittedJob<RiskScanInput, RiskScanResult>> {
  for (let attempt = 1; ; attempt++) {
    let response: Response | undefined;
    try {
      response = await fetch('/scan', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
        body: JSON.stringify(input),
        signal,
      });
    } catch (error) {
      if (signal.aborted || attempt >= 3) throw error;
    }
    if (response?.ok) return (await response.json()) as SubmittedJob<RiskScanInput, RiskScanResult>;
    if (response && ((response.status < 500 && response.status !== 429) || attempt >= 3)) throw await WaitlessApiError.fromResponse(response);
    await sleep(300 * 3 ** (attempt - 1), signal);
  }
}

/** A sentence for an error, from a problem+json answer when there is one. */
export function describeError(error: Error): string {
  if (error instanceof WaitlessApiError) {
    if (error.status === 401) return `Your access to this assessment has expired or is not valid (401): ${error.detail ?? error.title}`;
    if (error.status === 404) return `This assessment no longer exists (404): ${error.detail ?? error.title}`;
    return `${error.status} ${error.title}${error.detail ? `: ${error.detail}` : ''}`;
  }
  if (error.name === 'JobUnsuccessfulError') return error.message;
  return `Could not reach the server: ${error.message}`;
}
