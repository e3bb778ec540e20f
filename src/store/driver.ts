/** A parameterised SQL statement, as produced by the query builders in `queries.ts`. */
export interface Sql {
  text: string;
  values: unknown[];
}

/** Something that runs SQL: the driver itself or a transaction handle. */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: Sql): Promise<Row[]>;
  /** Runs raw SQL text that may hold several statements (migrations). No parameters. */
  exec(text: string): Promise<void>;
}

/**
 * The whole surface Waitless needs from a database. Two implementations exist:
 * `pg` for a PostgreSQL server and PGlite for the embedded default. Both run the same SQL.
 */
export interface Driver extends Queryable {
  /** Which implementation this is, for logs and health output. */
  readonly kind: 'postgres' | 'pglite';
  /** How many connections it may hold at once (PGlite: one session). */
  readonly maxConnections: number;
  /** Runs `fn` inside one transaction; commits on return, rolls back on throw. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Subscribes to a NOTIFY channel. Returns an unsubscribe function.
   * `channel` must be a plain lower-case identifier. `onResync` is called after the listening
   * connection was lost and came back: notifications sent meanwhile are gone, so re-read.
   */
  listen(channel: string, onPayload: (payload: string) => void, onResync?: () => void): Promise<() => Promise<void>>;
  /** Releases connections. A driver built around a caller-owned connection leaves it open. */
  close(): Promise<void>;
}

/** Schema names end up in channel names and `search_path`; keep them to a safe alphabet. */
export function assertSchemaName(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(schema)) {
    throw new TypeError(`Invalid schema name "${schema}": use lower-case letters, digits and underscores.`);
  }
  return schema;
}
