import { parseArgs } from 'node:util';

/** One command-line flag and the environment variable that may set it instead. */
interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  /** The variable read when the flag is not given (a flag always wins). None: command-line only. */
  env?: string;
  /** The value's placeholder in the help, e.g. `N`, `D`, `LIST`. */
  arg?: string;
  /** Help text; lines after the first are indented under it. */
  help: string;
}

/**
 * Every flag of the CLI, with its variable and its help: the parser, the environment and
 * `--help` are all read from here, so a flag cannot exist without its variable being told.
 */
export const FLAGS = {
  port: { type: 'string', env: 'WAITLESS_PORT', arg: 'N', help: 'HTTP port. Default: 3000; serve and dev also read PORT.\nA worker listens only when given one.' },
  host: { type: 'string', env: 'WAITLESS_HOST', arg: 'ADDR', help: 'Address serve and worker --port listen on. Default: 0.0.0.0.' },
  jobs: { type: 'string', env: 'WAITLESS_JOBS', arg: 'MODULE', help: 'A module whose exports are defineJob() definitions.' },
  demo: { type: 'boolean', env: 'WAITLESS_DEMO', help: 'Also run the demo job, analyze-document.' },
  data: { type: 'string', env: 'WAITLESS_DATA', arg: 'DIR', help: 'Folder of dev\'s embedded PGlite database. Default: ./.waitless.' },
  database: {
    type: 'string',
    env: 'DATABASE_URL',
    arg: 'URL',
    help: 'A postgres:// URL (or a PGlite folder, or memory://).\ndev reads only the flag: it runs on PGlite.',
  },
  schema: { type: 'string', env: 'WAITLESS_SCHEMA', arg: 'NAME', help: 'Schema for Waitless tables. Default: waitless.' },
  'no-migrate': {
    type: 'boolean',
    env: 'WAITLESS_NO_MIGRATE',
    help: 'Do not migrate on start (run `waitless migrate` first); start only if the schema\nholds exactly this version\'s migrations.',
  },
  'no-worker': { type: 'boolean', env: 'WAITLESS_NO_WORKER', help: 'serve only answers the API; jobs run in `waitless worker` processes.' },
  concurrency: { type: 'string', env: 'WAITLESS_CONCURRENCY', arg: 'N', help: 'Jobs one worker runs at once. Default: 10.' },
  lease: { type: 'string', env: 'WAITLESS_LEASE', arg: 'D', help: 'How long a claim stays valid without a heartbeat. Default: 30s.' },
  heartbeat: { type: 'string', env: 'WAITLESS_HEARTBEAT', arg: 'D', help: 'How often leases are extended. Default: a third of --lease.' },
  'poll-interval': { type: 'string', env: 'WAITLESS_POLL_INTERVAL', arg: 'D', help: 'Backstop poll for due jobs and expired leases. Default: 2s.' },
  'flush-interval': {
    type: 'string',
    env: 'WAITLESS_FLUSH_INTERVAL',
    arg: 'D',
    help:
      'How long output and progress are buffered before a worker writes them (one\nstatement for all its jobs): longer costs the database less, shorter shows\ntokens sooner. Default: 200ms.',
  },
  'shutdown-grace': {
    type: 'string',
    env: 'WAITLESS_SHUTDOWN_GRACE',
    arg: 'D',
    help: 'On SIGINT/SIGTERM, how long running jobs may take to finish. Default: 10s.',
  },
  'webhook-allow': {
    type: 'string',
    env: 'WAITLESS_WEBHOOK_ALLOW',
    arg: 'LIST',
    help: 'Hosts, addresses or CIDRs webhooks may reach despite the SSRF guard, comma\nseparated, e.g. 127.0.0.1 for local development.',
  },
  'webhook-retry': {
    type: 'string',
    env: 'WAITLESS_WEBHOOK_RETRY',
    arg: 'LIST',
    help: 'Delays between webhook attempts, e.g. 1s,5s,30s, or none.\nDefault: 5s,5m,30m,2h,5h,10h,10h.',
  },
  'webhook-timeout': {
    type: 'string',
    env: 'WAITLESS_WEBHOOK_TIMEOUT',
    arg: 'D',
    help: 'How long a webhook receiver may take to answer; a delivery in flight is taken\nover by another process after 4 times this if its sender died. Default: 15s.',
  },
  'max-connections': {
    type: 'string',
    env: 'WAITLESS_MAX_CONNECTIONS',
    arg: 'N',
    help: 'PostgreSQL connections this process may open (its pool). Default: 10.',
  },
  'submit-rate': {
    type: 'string',
    env: 'WAITLESS_SUBMIT_RATE',
    arg: 'N',
    help: 'serve, dev: submits per second per tenant, in this process (429 with Retry-After\npast it; N processes admit N times it). 0: no limit. Default: 1000.',
  },
  'submit-burst': { type: 'string', env: 'WAITLESS_SUBMIT_BURST', arg: 'N', help: 'serve, dev: submits a tenant may make at once. Default: 2 × --submit-rate.' },
  'streams-per-key': {
    type: 'string',
    env: 'WAITLESS_STREAMS_PER_KEY',
    arg: 'N',
    help: 'serve, dev: event streams one API key may hold open, in this process (429 past\nit). 0: no limit. Default: 1000.',
  },
  'webhook-endpoints': { type: 'string', env: 'WAITLESS_WEBHOOK_ENDPOINTS', arg: 'N', help: 'Webhook endpoints one tenant may register. Default: 20.' },
  'webhook-tenant-concurrency': {
    type: 'string',
    env: 'WAITLESS_WEBHOOK_TENANT_CONCURRENCY',
    arg: 'N',
    help: 'Webhook deliveries of one tenant in flight at once, per process, so a tenant\nwhose receivers hang leaves the others room. Default: 5 (of 10).',
  },
  'cors-origin': {
    type: 'string',
    env: 'WAITLESS_CORS_ORIGIN',
    arg: 'LIST',
    help: 'Origins whose pages may call the API (browsers with job tokens), comma\nseparated. Default: none.',
  },
  retention: {
    type: 'string',
    env: 'WAITLESS_RETENTION',
    arg: 'D',
    help: 'How long finished jobs are kept (with their events, steps and webhook\ndeliveries) before workers and prune delete them. Default: 30d.',
  },
  'retention-failed': {
    type: 'string',
    env: 'WAITLESS_RETENTION_FAILED',
    arg: 'D',
    help: 'How long failed and timed-out jobs are kept. Default: --retention.',
  },
  'retention-tenants': {
    type: 'string',
    env: 'WAITLESS_RETENTION_TENANTS',
    arg: 'LIST',
    help: 'Retention per tenant, winning over the rest: tenant=D, or tenant=D/F to keep\nits failed jobs for F, comma separated, e.g. acme=365d,trial=1d/7d.',
  },
  'no-prune': { type: 'boolean', env: 'WAITLESS_NO_PRUNE', help: 'Workers do not delete old jobs; run `waitless prune` (e.g. from cron) instead.' },
  // Arguments of one `prune`: a variable left in the environment must not change every run.
  'dry-run': { type: 'boolean', help: 'prune: count what would be deleted, delete nothing.' },
  'older-than': { type: 'string', arg: 'D', help: 'prune: delete every job finished more than D ago, whatever the\nretention rules say (they still apply when absent).' },
  // Arguments of one `keys create`, not configuration: a variable left in a deployment's
  // environment must not turn every key created there into an admin key.
  tenant: { type: 'string', arg: 'NAME', help: 'keys create: the tenant the key belongs to.' },
  label: { type: 'string', arg: 'TEXT', help: 'keys create: a note shown by keys list.' },
  admin: { type: 'boolean', help: 'keys create: an admin key (may recover jobs and open the dashboard).' },
  'max-priority': {
    type: 'string',
    arg: 'N',
    help: 'keys create: the highest priority the key may give a job (-1000 to 1000); a\nsubmit above it is refused with 403. Default: none.',
  },
  help: { type: 'boolean', short: 'h', help: 'This help.' },
} as const satisfies Record<string, Flag>;

export type FlagName = keyof typeof FLAGS;
type Values = { -readonly [K in FlagName]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** The `Options:` part of `--help`, from {@link FLAGS}. */
export function flagsHelp(): string {
  const lines: string[] = [];
  for (const [name, flag] of Object.entries(FLAGS) as [string, Flag][]) {
    const head = `  --${name}${flag.arg ? ` ${flag.arg}` : ''}`;
    const text = flag.help.split('\n');
    if (flag.env) text.push(`(env ${flag.env})`);
    const [first, ...rest] = text;
    if (head.length < 22) lines.push(`${head.padEnd(22)}${first}`);
    else lines.push(head, `${' '.repeat(22)}${first}`);
    for (const line of rest) lines.push(`${' '.repeat(22)}${line}`);
  }
  return lines.join('\n');
}

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;

/** What the command line and the environment say, and where each value came from (for errors). */
export interface ParsedFlags {
  values: Values;
  positionals: string[];
  /** `--name` or the variable that set it: errors name what the person actually wrote. */
  origin: (name: FlagName) => string;
  /** True when the value came from the command line, not from the environment. */
  fromCommandLine: (name: FlagName) => boolean;
}

/**
 * Parses `args`, then fills each flag not given from its variable. Throws a `TypeError`
 * naming the variable for a boolean variable that is neither true nor false.
 */
export function parseFlags(args: string[], env: NodeJS.ProcessEnv): ParsedFlags {
  const options = Object.fromEntries(
    Object.entries(FLAGS).map(([name, flag]: [string, Flag]) => [name, { type: flag.type, ...(flag.short ? { short: flag.short } : {}) }]),
  ) as { [K in FlagName]: { type: (typeof FLAGS)[K]['type']; short?: string } };
  const parsed = parseArgs({ args, allowPositionals: true, options });
  const values = { ...parsed.values };
  const fromEnv = new Set<FlagName>();
  for (const [name, flag] of Object.entries(FLAGS) as [FlagName, Flag][]) {
    if (values[name] !== undefined || !flag.env) continue;
    const raw = env[flag.env];
    if (raw === undefined || raw === '') continue;
    if (flag.type === 'boolean') {
      if (!TRUE.test(raw) && !FALSE.test(raw)) throw new TypeError(`${flag.env} must be true or false, got "${raw}"`);
      (values as Record<string, unknown>)[name] = TRUE.test(raw);
    } else {
      (values as Record<string, unknown>)[name] = raw;
    }
    fromEnv.add(name);
  }
  return {
    values,
    positionals: parsed.positionals,
    origin: (name) => (fromEnv.has(name) ? (FLAGS[name] as Flag).env! : `--${name}`),
    fromCommandLine: (name) => values[name] !== undefined && !fromEnv.has(name),
  };
}
