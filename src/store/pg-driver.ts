import { createHash } from 'node:crypto';
import pg from 'pg';
import { DatabaseUnavailableError } from '../errors.ts';
import type { Driver, Queryable, Sql } from './driver.ts';
import { unreachableReason } from './unreachable.ts';

/** Options for the PostgreSQL driver. */
export interface PgDriverOptions {
  /** Connection string, e.g. `postgres://user@host:5432/db`. */
  connectionString: string;
  /** Schema holding Waitless tables; set as `search_path` on every connection. */
  schema: string;
  /** Pool size. Default: `10`. */
  maxConnections?: number;
  /**
   * How long a statement waits for a pooled connection (a free one, or a new one to open)
   * before it fails with {@link DatabaseUnavailableError}: after an outage, a burst of requests
   * must not queue for connections long after their callers left. Default: `10_000` ms.
   */
  connectionTimeoutMs?: number;
}

const LISTEN_RETRY_MS = 1000;

/**
 * PostgreSQL through `pg`. Queries go through a pool; LISTEN uses one dedicated connection
 * that reconnects on its own, because a pooled connection may be handed to someone else.
 */
export function createPgDriver(options: PgDriverOptions): Driver {
  const connection = {
    connectionString: options.connectionString,
    options: `-c search_path=${options.schema}`,
  };
  const pool = new pg.Pool({ ...connection, max: options.maxConnections ?? 10, connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000 });
  // An idle pooled client that loses its server must not crash the process.
  pool.on('error', () => {});

  const handlers = new Map<string, Set<(payload: string) => void>>();
  const resyncHandlers = new Set<() => void>();
  let listener: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let retryDelay = LISTEN_RETRY_MS;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  // LISTEN/UNLISTEN go one at a time: pg refuses overlapping queries on one client.
  let listenerChain: Promise<unknown> = Promise.resolve();
  const onListener = (client: pg.Client, text: string): Promise<unknown> => {
    const next = listenerChain.then(() => client.query(text));
    listenerChain = next.catch(() => {});
    return next;
  };

  /** Reconnects until it works or the driver closes, backing off to at most 30 s between tries. */
  function scheduleReconnect(): void {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      ensureListener().then(
        () => {
          retryDelay = LISTEN_RETRY_MS;
          // Notifications sent while we were away are lost: tell readers to re-read.
          for (const resync of resyncHandlers) resync();
        },
        () => {
          retryDelay = Math.min(retryDelay * 2, 30_000);
          scheduleReconnect();
        },
      );
    }, retryDelay);
    retryTimer.unref();
  }

  async function connectListener(): Promise<pg.Client> {
    if (closed) throw new Error('driver closed');
    const client = new pg.Client(connection);
    client.on('notification', (message) => {
      for (const handler of handlers.get(message.channel) ?? []) handler(message.payload ?? '');
    });
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (listener === client) listener = undefined;
      void client.end().catch(() => {});
      scheduleReconnect();
    };
    client.on('error', onLost);
    client.on('end', onLost);
    try {
      await client.connect();
      for (const channel of handlers.keys()) await onListener(client, `LISTEN ${channel}`);
    } catch (error) {
      lost = true;
      await client.end().catch(() => {});
      throw error;
    }
    if (closed) {
      await client.end().catch(() => {});
      throw new Error('driver closed');
    }
    listener = client;
    return client;
  }

  async function ensureListener(): Promise<pg.Client> {
    if (listener) return listener;
    connecting ??= connectListener().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  // Every statement runs as a named prepared statement: parsed and planned once per connection
  // instead of on every call, which the submit and claim paths feel (see docs/benchmarks.md).
  // Names come from the text, so a connection prepares each distinct statement once.
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (!name) names.set(text, (name = `waitless_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`));
    return name;
  };
  /** The error to throw for `error`: one of the family when the database did not answer, else itself. */
  const unanswered = (error: unknown): unknown => {
    const reason = unreachableReason(error);
    return reason === undefined ? error : new DatabaseUnavailableError(reason, { cause: error });
  };
  const run = async <Row,>(client: pg.Pool | pg.PoolClient, sql: Sql): Promise<Row[]> => {
    try {
      const result = await client.query({ name: nameOf(sql.text), text: sql.text, values: sql.values });
      return result.rows as Row[];
    } catch (error) {
      throw unanswered(error);
    }
  };

  return {
    kind: 'postgres',
    maxConnections: pool.options.max,
    query: (sql) => run(pool, sql),
    async transaction(fn) {
      const client = await pool.connect().catch((error: unknown) => {
        throw unanswered(error);
      });
      // A connection lost while the transaction waits between statements (it is checked out, so
      // the pool's own listener is off) is reported here instead of crashing the process; the
      // next statement fails, and the client is discarded rather than pooled again.
      let broken: Error | undefined;
      const onError = (error: Error) => (broken ??= error);
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const tx: Queryable = {
          query: (sql) => run(client, sql),
          exec: async (text) => void (await client.query(text)),
        };
        const value = await fn(tx);
        await client.query('COMMIT');
        return value;
      } catch (error) {
        if (!broken) await client.query('ROLLBACK').catch(() => {});
        throw broken ? unanswered(error) : error;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    async exec(text) {
      await pool.query(text).catch((error: unknown) => {
        throw unanswered(error);
      });
    },
    async listen(channel, onPayload, onResync) {
      let set = handlers.get(channel);
      const first = !set;
      if (!set) handlers.set(channel, (set = new Set()));
      set.add(onPayload);
      if (onResync) resyncHandlers.add(onResync);
      const client = await ensureListener();
      if (first && listener === client) await onListener(client, `LISTEN ${channel}`);
      return async () => {
        if (onResync) resyncHandlers.delete(onResync);
        const current = handlers.get(channel);
        current?.delete(onPayload);
        if (current && current.size === 0) {
          handlers.delete(channel);
          if (listener) await onListener(listener, `UNLISTEN ${channel}`).catch(() => {});
        }
      };
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      handlers.clear();
      resyncHandlers.clear();
      const client = listener;
      listener = undefined;
      await client?.end().catch(() => {});
      await pool.end();
    },
  };
}
