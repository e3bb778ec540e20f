/**
 * What a person sees, and when: the risk-scan example in headless Chromium. For each run, a
 * fresh page submits the questionnaire, and the page itself records (performance.now(), in a
 * MutationObserver) when each thing first reaches the DOM after the click:
 *
 * - `estimate`: the instant fallback from the 202 body;
 * - `progress`: the first progress report of the job (a percent above 0);
 * - `first token`: the first words of the AI text;
 * - `result`: the AI assessment in the estimate's place.
 *
 * Without a fallback, the first useful thing on screen would be the first token: the ratio of
 * the two, measured in the same runs, is what the fallback buys.
 *
 *   node bench/sign-of-life.ts [--backend postgres|pglite|all] [--iterations 10] [--seconds 6]
 *                              [--database URL]
 *
 * Needs Debian's chromium (or WAITLESS_CHROMIUM).
 */
import { parseArgs } from 'node:util';
import { startRiskScan } from '../examples/risk-scan/server.ts';
import { COMPANIES } from '../examples/risk-scan/questions.ts';
import { launchChromium } from '../test/browser/chromium.ts';
import { DEFAULT_POSTGRES_URL, dropSchema, freshSchema, ms, numberOption, parseBackends, printMachine, printTable, silentLogger, summarize } from './common.ts';

const { values } = parseArgs({ options: { backend: { type: 'string' }, iterations: { type: 'string' }, seconds: { type: 'string' }, database: { type: 'string' } } });
const backends = parseBackends(values.backend);
const iterations = numberOption(values.iterations, 'WAITLESS_BENCH_ITERATIONS', 10);
const seconds = numberOption(values.seconds, 'WAITLESS_BENCH_SECONDS', 6);
const databaseUrl = values.database ?? DEFAULT_POSTGRES_URL;

type Marks = Record<'estimate' | 'progress' | 'firstToken' | 'result', number>;

await printMachine(backends.includes('postgres') ? databaseUrl : undefined);
console.log(`\n${iterations} submits per backend, simulated model ${seconds} s, one at a time, a fresh page each\n`);
const browser = await launchChromium();
try {
  for (const backend of backends) {
    const schema = freshSchema();
    const server = await startRiskScan({ port: 0, database: backend === 'postgres' ? databaseUrl : 'memory://', schema, seconds, openai: null, logger: silentLogger });
    const runs: Marks[] = [];
    try {
      for (let i = 0; i < iterations; i++) {
        const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        try {
          const page = await context.newPage();
          await page.goto(server.url);
          await page.click(`[data-testid=tab-${COMPANIES[i % COMPANIES.length]!.id}]`);
          await page.waitForSelector('[data-testid=submit]:not([disabled])');
          runs.push(
            await page.evaluate(async () => {
              const marks: Partial<Record<keyof Marks, number>> = {};
              const note = (name: keyof Marks, seen: boolean) => {
                if (seen && marks[name] === undefined) marks[name] = performance.now();
              };
              const check = () => {
                note('estimate', document.querySelector('[data-testid=fallback]') !== null);
                note('progress', Number(document.querySelector('[data-testid=progress]')?.getAttribute('data-percent') ?? 0) > 0);
                note('firstToken', (document.querySelector('[data-testid=ai-stream]')?.textContent ?? '').trim() !== '');
                note('result', document.querySelector('[data-testid=ai-result]') !== null);
              };
              const observer = new MutationObserver(check);
              observer.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
              const start = performance.now();
              document.querySelector<HTMLButtonElement>('[data-testid=submit]')!.click();
              await new Promise<void>((resolve) => {
                const timer = setInterval(() => {
                  check();
                  if (marks.result !== undefined) {
                    clearInterval(timer);
                    resolve();
                  }
                }, 20);
              });
              observer.disconnect();
              return Object.fromEntries(Object.entries(marks).map(([name, at]) => [name, at - start])) as Marks;
            }),
          );
        } finally {
          await context.close();
        }
      }
    } finally {
      await server.close();
      if (backend === 'postgres') await dropSchema(databaseUrl, schema);
    }
    const rows = (['estimate', 'progress', 'firstToken', 'result'] as const).map((name) => {
      const s = summarize(runs.map((r) => r[name]));
      return [name === 'firstToken' ? 'first token' : name, ms(s.p50), ms(s.p90), ms(s.max)];
    });
    console.log(`### ${backend}\n`);
    printTable(['on screen after the click', 'p50 ms', 'p90 ms', 'max ms'], rows);
    const ratio = summarize(runs.map((r) => r.firstToken / r.estimate)).p50;
    console.log(`\nfirst token / estimate, per run, median: ${ratio.toFixed(0)}× sooner with the fallback\n`);
  }
} finally {
  await browser.close();
}
