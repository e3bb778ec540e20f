/**
 * Telling "the database did not answer" from "the database said no": the first is worth
 * waiting out (a process started before its database, an outage, a pool with no free
 * connection), the second is not. One home for the CLI's start-up wait, the PostgreSQL driver
 * and the HTTP layer's 503.
 */
import { DatabaseUnavailableError } from '../errors.ts';

/** Node's and PostgreSQL's ways of saying "nobody answered (yet)", as opposed to "you are wrong". */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  // cannot_connect_now: the server is starting up or shutting down.
  '57P03',
  // admin_shutdown: the server is stopping (a restart) and ended this connection.
  '57P01',
]);

/** Why `error` means the server is not reachable, or `undefined` when it is some other failure. */
export function unreachableReason(error: unknown): string | undefined {
  if (error instanceof DatabaseUnavailableError) return error.reason;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNREACHABLE.has(code)) return code;
  if (error instanceof Error) {
    // pg's words when the server closes a connection before it is set up, and the pool's when
    // no connection came free within its wait.
    if (/Connection terminated (unexpectedly|due to connection timeout)/.test(error.message)) return error.message;
    if (/timeout exceeded when trying to connect/.test(error.message)) return 'no database connection came free in time';
  }
  return undefined;
}
