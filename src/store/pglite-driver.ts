import { PGlite } from '@electric-sql/pglite';
import type { Driver, Queryable, Sql } from './driver.ts';

/** Options for the embedded PGlite driver. */
export interface PgliteDriverOptions {
  /**
   * Where PGlite keeps its files: a folder path, or `memory://` for a throwaway database.
   * Default: `memory://`.
   */
  dataDir?: string;
  /** An already open PGlite instance to use instead of opening one. Left open on `close()`. */
  instance?: PGlite;
  /** Schema holding Waitless tables; set as `search_path`. */
  schema: string;
}

/**
 * Embedded PostgreSQL (WASM) in this process. PGlite runs one statement at a time and
 * serialises transactions itself, so there is no pool; the SQL is the same as on a server.
 */
export async function createPgliteDriver(options: PgliteDriverOptions): Promise<Driver> {
  const db = options.instance ?? (await PGlite.create(options.dataDir ?? 'memory://'));
  const owned = !options.instance;
  // The schema may not exist yet; search_path tolerates that and migrations create it.
  await db.exec(`SET search_path TO ${options.schema}`);

  const run = async <Row,>(target: Pick<PGlite, 'query'>, sql: Sql): Promise<Row[]> => {
    const result = await target.query<Row>(sql.text, sql.values);
    return result.rows;
  };

  return {
    kind: 'pglite',
    query: (sql) => run(db, sql),
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({ query: (sql) => run(tx, sql), exec: async (text) => void (await tx.exec(text)) } satisfies Queryable),
      ),
    async exec(text) {
      await db.exec(text);
    },
    async listen(channel, onPayload) {
      const unlisten = await db.listen(channel, onPayload);
      return () => unlisten();
    },
    async close() {
      if (owned && !db.closed) await db.close();
    },
  };
}
