import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { Driver, Queryable, Sql } from './driver.ts';

/** Options for the embedded PGlite driver. */
export interface PgliteDriverOptions {
  /**
   * Where PGlite keeps its files: a folder path, or `memory://` for a throwaway database.
   * Default: `memory://`.
   */
  dataDir?: string;
  /**
   * An already open PGlite instance (your app's own) to use instead of opening one. Its session
   * settings are left as they are, and it stays open on `close()`.
   */
  instance?: PGlite;
  /** Schema holding Waitless tables. */
  schema: string;
}

type Target = Pick<PGlite, 'query' | 'exec'> | Transaction;

/**
 * Embedded PostgreSQL (WASM) in this process. PGlite runs one statement at a time and
 * serialises transactions itself, so there is no pool; the SQL is the same as on a server.
 */
export async function createPgliteDriver(options: PgliteDriverOptions): Promise<Driver> {
  const owned = !options.instance;
  const db = options.instance ?? (await PGlite.create(options.dataDir ?? 'memory://'));
  const setPath = `SET search_path TO ${options.schema}`;
  // Our own instance gets the schema for its whole session. On a borrowed one the setting is
  // made per transaction (SET LOCAL), so the app's own queries keep their search_path.
  if (owned) await db.exec(setPath);
  const scoped = <T,>(fn: (target: Target) => Promise<T>): Promise<T> =>
    owned
      ? fn(db)
      : db.transaction(async (tx) => {
          await tx.exec(`SET LOCAL search_path TO ${options.schema}`);
          return fn(tx);
        });

  const run = async <Row,>(target: Target, sql: Sql): Promise<Row[]> => (await target.query<Row>(sql.text, sql.values)).rows;
  const handle = (target: Target): Queryable => ({
    query: (sql) => run(target, sql),
    exec: async (text) => void (await target.exec(text)),
  });

  return {
    kind: 'pglite',
    maxConnections: 1,
    query: (sql) => scoped((target) => run(target, sql)),
    transaction: (fn) =>
      db.transaction(async (tx) => {
        if (!owned) await tx.exec(`SET LOCAL search_path TO ${options.schema}`);
        return fn(handle(tx));
      }),
    exec: (text) => scoped(async (target) => void (await target.exec(text))),
    async listen(channel, onPayload) {
      const unlisten = await db.listen(channel, onPayload);
      return () => unlisten();
    },
    async close() {
      if (owned && !db.closed) await db.close();
    },
  };
}
