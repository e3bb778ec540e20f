import { parseRetryAfter } from '../contract/retry-after.ts';
import { WaitlessError } from '../errors.ts';

/** An RFC 9457 problem detail, as the API answers every error. Extra members carry specifics. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  /** Per-issue details of a `422` (input validation). */
  errors?: Array<{ path: string; message: string; code?: string }>;
  [extension: string]: unknown;
}

/** Longest excerpt of a non-JSON error body kept in the message. */
const EXCERPT_CHARS = 200;

/**
 * An HTTP answer that is not a success. Built from the API's `application/problem+json` body;
 * an answer that is not one (an HTML page or plain text from a proxy, load balancer or gateway;
 * an empty body) becomes one too, with a message that says so, never a JSON parse error.
 */
export class WaitlessApiError extends WaitlessError {
  override name = 'WaitlessApiError';
  readonly code = 'api_error';
  /** The HTTP status code, e.g. `404`. */
  readonly status: number;
  /** The problem type URI (`"/problems/job-not-found"`); `"about:blank"` when the answer had none. */
  readonly type: string;
  /** Short summary: the problem's `title`, else the HTTP status text. */
  readonly title: string;
  /** The problem's `detail`: what happened and what to do. */
  readonly detail: string | undefined;
  /** The parsed problem body; `undefined` when the answer was not problem JSON. */
  readonly problem: ProblemDetails | undefined;
  /** The `Retry-After` of the answer, in ms, when it carried one. */
  readonly retryAfterMs: number | undefined;

  constructor(init: { status: number; type?: string; title: string; detail?: string; problem?: ProblemDetails; retryAfterMs?: number; message?: string }) {
    super(init.message ?? `${init.status} ${init.title}${init.detail ? `: ${init.detail}` : ''}`);
    this.status = init.status;
    this.type = init.type ?? 'about:blank';
    this.title = init.title;
    this.detail = init.detail;
    this.problem = init.problem;
    this.retryAfterMs = init.retryAfterMs;
  }

  /** Reads a failed response's body (once) and builds the error from it, whatever it contains. */
  static async fromResponse(response: Response): Promise<WaitlessApiError> {
    let text = '';
    try {
      text = await response.text();
    } catch {
      // The body could not be read (connection dropped): the status line is all there is.
    }
    return WaitlessApiError.fromText(response, text);
  }

  /** Builds the error from a response whose body has already been read as `text`. */
  static fromText(response: Response, text: string, expected?: string): WaitlessApiError {
    const contentType = response.headers.get('content-type') ?? '';
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    const statusText = response.statusText || `HTTP ${response.status}`;
    if (/json/i.test(contentType) && !expected) {
      const problem = parseObject(text);
      if (problem) {
        const title = typeof problem.title === 'string' ? problem.title : statusText;
        const detail = typeof problem.detail === 'string' ? problem.detail : undefined;
        const type = typeof problem.type === 'string' ? problem.type : undefined;
        return new WaitlessApiError({ status: response.status, type, title, detail, problem, retryAfterMs });
      }
    }
    const excerpt = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, EXCERPT_CHARS);
    const what = !text
      ? 'an empty body'
      : /json/i.test(contentType)
        ? `a "${contentType.split(';')[0]}" body that is not valid JSON`
        : contentType
          ? `a "${contentType.split(';')[0]}" body`
          : 'a body without a content type';
    const detail =
      `The server answered ${response.status} with ${what} instead of ${expected ?? 'an application/problem+json error'}` +
      ` — probably a proxy, load balancer or gateway between this client and Waitless (check the base URL).` +
      (excerpt ? ` The body begins: "${excerpt}"` : '');
    return new WaitlessApiError({ status: response.status, title: statusText, detail, retryAfterMs });
  }
}

function parseObject(text: string): ProblemDetails | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as ProblemDetails) : undefined;
  } catch {
    return undefined;
  }
}
