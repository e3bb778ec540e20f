/**
 * The risk-scan job: a small business answers a security questionnaire and gets an assessment.
 *
 * - `fallback(input)` is the instant answer: a rule-based score, risk level and top findings,
 *   computed in well under a millisecond without any AI. The submit's `202` carries it, so the
 *   page has something solid on screen at once.
 * - `run` is the AI assessment, the seed's five-section structured summary, written token by
 *   token: from an OpenAI-compatible `/chat/completions` stream when `OPENAI_BASE_URL` is set,
 *   otherwise from a built-in simulated model that takes `RISK_SCAN_SECONDS` (default 12).
 *
 *   node src/cli/main.ts dev --jobs examples/risk-scan/jobs.ts   # the job alone, no page
 *
 * (In your own service: `import { defineJob } from 'waitless'`.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob, type JobContext, NonRetryableError } from '../../src/index.ts';
import { type Answer, type Answers, ANSWERS, type AssessmentSections, QUESTION_IDS, type Question, type QuestionId, QUESTIONS, SECTION_TITLES } from './questions.ts';

// ------------------------------------------------------------------------------ the input

export const riskScanInput = z.strictObject({
  company: z.string().trim().min(1, 'Enter the company name.').max(120),
  /** A few words on what the company does (optional): the AI uses it for tone and examples. */
  sector: z.string().trim().max(200).optional(),
  answers: z.record(z.enum(QUESTION_IDS), z.enum(ANSWERS)),
});

export type RiskScanInput = z.output<typeof riskScanInput>;

// ------------------------------------------------------------------------------ the results

export type RiskLevel = 'low' | 'moderate' | 'high' | 'critical';
export type Severity = 'critical' | 'high' | 'medium' | 'low';

export interface Finding {
  id: QuestionId;
  control: string;
  answer: Answer;
  severity: Severity;
  /** What the gap leads to. */
  risk: string;
  /** The first thing to do. */
  fix: string;
}

/** The instant, rule-based answer (the job's `fallback`). */
export interface RiskEstimate {
  kind: 'estimate';
  company: string;
  /** Risk score, 0 (every control in place) to 100 (none). */
  score: number;
  level: RiskLevel;
  /** The three weightiest gaps. */
  findings: Finding[];
  /** How many controls are missing or partial. */
  gaps: number;
  method: 'rules';
}


/** The AI assessment (the job's result). */
export interface RiskAssessment {
  kind: 'ai';
  company: string;
  score: number;
  level: RiskLevel;
  /** Every gap, weightiest first. */
  findings: Finding[];
  sections: AssessmentSections;
  /** The whole assessment as streamed (Markdown, the five sections under `##` headings). */
  text: string;
  /** Which model wrote it. */
  model: string;
}

export type RiskScanResult = RiskEstimate | RiskAssessment;

// ------------------------------------------------------------------------------ the rules

const GAP: Record<Answer, number> = { yes: 0, partial: 0.5, no: 1 };

function levelOf(score: number): RiskLevel {
  if (score < 20) return 'low';
  if (score < 40) return 'moderate';
  if (score < 60) return 'high';
  return 'critical';
}

function severityOf(question: Question, answer: Answer): Severity {
  const weight = question.weight * GAP[answer];
  if (weight >= 12) return 'critical';
  if (weight >= 7) return 'high';
  if (weight >= 4) return 'medium';
  return 'low';
}

/** Score, level and every gap (weightiest first), from the answers alone. */
export function score(answers: Answers): { score: number; level: RiskLevel; findings: Finding[]; strengths: Question[] } {
  let total = 0;
  const gaps: Array<{ question: Question; answer: Answer; weight: number }> = [];
  const strengths: Question[] = [];
  for (const question of QUESTIONS) {
    const answer = answers[question.id];
    const weight = question.weight * GAP[answer];
    total += weight;
    if (weight > 0) gaps.push({ question, answer, weight });
    else strengths.push(question);
  }
  gaps.sort((a, b) => b.weight - a.weight);
  const findings = gaps.map(({ question, answer }) => ({
    id: question.id,
    control: question.control,
    answer,
    severity: severityOf(question, answer),
    risk: question.risk,
    fix: question.fix,
  }));
  const rounded = Math.round(total);
  return { score: rounded, level: levelOf(rounded), findings, strengths: strengths.sort((a, b) => b.weight - a.weight) };
}

/** The instant estimate: deterministic, no I/O, microseconds. */
export function estimate(input: RiskScanInput): RiskEstimate {
  const { score: value, level, findings } = score(input.answers);
  return { kind: 'estimate', company: input.company, score: value, level, findings: findings.slice(0, 3), gaps: findings.length, method: 'rules' };
}

// ------------------------------------------------------------------------------ the "AI"

const LEVEL_WORDS: Record<RiskLevel, string> = {
  low: 'a low',
  moderate: 'a moderate',
  high: 'a high',
  critical: 'a critical',
};

const ANSWER_WORDS: Record<Answer, string> = { yes: 'in place', partial: 'only partly in place', no: 'missing' };

/**
 * What the simulated model writes: the same five sections a real model is asked for, built from
 * the answers with some care for wording, so the difference from the estimate is visible.
 */
export function simulatedAssessment(input: RiskScanInput): string {
  const { score: value, level, findings, strengths } = score(input.answers);
  const who = input.sector ? `${input.company}, ${input.sector},` : input.company;
  const top = findings.slice(0, 3);
  const critical = findings.filter((f) => f.severity === 'critical');
  const lines: string[] = [];
  lines.push(`## ${SECTION_TITLES.executiveSummary}`);
  if (findings.length === 0) {
    lines.push(`${who} has every control in this questionnaire in place. The remaining risk is the kind no checklist covers: keep testing restores and rehearsing the incident plan so that these controls still work on the day they are needed.`);
  } else {
    lines.push(
      `${who} carries ${LEVEL_WORDS[level]} level of cyber risk. ` +
        (critical.length > 0
          ? `The most urgent gap is ${critical[0]!.control.toLowerCase()}: ${critical[0]!.risk}. `
          : `No single gap is critical, but together the missing controls leave several easy paths in. `) +
        `Of the ${QUESTIONS.length} controls reviewed, ${strengths.length} are fully in place and ${findings.length} are missing or partial. ` +
        `Most of the exposure can be removed within a month, for little money, by the steps below.`,
    );
  }
  lines.push('', `## ${SECTION_TITLES.riskRating}`);
  lines.push(
    `**${level[0]!.toUpperCase()}${level.slice(1)} risk — ${value}/100** (0 means every control is in place). ` +
      `The score weighs each control by how often its absence features in incidents at small businesses: ` +
      `multi-factor authentication, offline backups and patching carry the most weight. ` +
      (value >= 40
        ? `At this level, a phishing email or an unpatched laptop is likely to turn into a business-stopping incident within a year.`
        : `At this level an incident is likely to stay contained, provided the gaps below are closed.`),
  );
  lines.push('', `## ${SECTION_TITLES.keyFindings}`);
  if (findings.length === 0) lines.push('No gaps were found.');
  findings.slice(0, 6).forEach((f, i) => {
    lines.push(`${i + 1}. **${f.control}** (${f.severity}) — ${ANSWER_WORDS[f.answer]}: ${f.risk}.`);
  });
  lines.push('', `## ${SECTION_TITLES.strengths}`);
  if (strengths.length === 0) lines.push('None of the reviewed controls is fully in place yet; the recommendations below start with the cheapest wins.');
  for (const s of strengths.slice(0, 5)) lines.push(`- **${s.control}** is in place — keep it that way as the team grows.`);
  lines.push('', `## ${SECTION_TITLES.recommendations}`);
  const when = ['This week', 'Within 30 days', 'Within 90 days'];
  if (top.length === 0) lines.push('1. **This quarter:** run a test restore and a tabletop exercise of the incident plan.');
  top.forEach((f, i) => {
    const question = QUESTIONS.find((q) => q.id === f.id)!;
    lines.push(`${i + 1}. **${when[i]}:** ${f.fix} (effort: ${question.effort}).`);
  });
  if (findings.length > 3) lines.push(`${top.length + 1}. **Then:** work through the remaining ${findings.length - 3} gaps in the order listed above, and re-run this scan.`);
  return lines.join('\n');
}

/** Splits the `##` sections of an assessment into the five fields (by title, else by position). */
export function parseSections(text: string): AssessmentSections {
  const keys = Object.keys(SECTION_TITLES) as Array<keyof AssessmentSections>;
  const sections: AssessmentSections = { executiveSummary: '', riskRating: '', keyFindings: '', strengths: '', recommendations: '' };
  const parts = text.split(/^#{1,3}\s+/m).slice(1);
  parts.forEach((part, index) => {
    const newline = part.indexOf('\n');
    const title = (newline < 0 ? part : part.slice(0, newline)).trim().toLowerCase();
    const body = newline < 0 ? '' : part.slice(newline + 1).trim();
    const byTitle = keys.find((k) => title.includes(SECTION_TITLES[k].toLowerCase().split(' ')[0]!));
    const key = byTitle ?? keys[index];
    if (key && !sections[key]) sections[key] = body;
  });
  return sections;
}

// ------------------------------------------------------------------------------ the job

/** An OpenAI-compatible endpoint (OpenAI, a local llama.cpp / vLLM / Ollama server…). */
export interface OpenAiConfig {
  /** Up to `/chat/completions`, e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  apiKey?: string;
  /** Default: `gpt-4o-mini`. */
  model?: string;
}

export interface RiskScanOptions {
  /** How long the simulated model takes, in seconds. Default: `RISK_SCAN_SECONDS`, else 12. */
  seconds?: number;
  /** The real model to call. `null`: always the simulated one. Default: from `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_MODEL`. */
  openai?: OpenAiConfig | null;
}

/** The model configuration the environment gives, if any. */
export function openAiFromEnv(env: NodeJS.ProcessEnv = process.env): OpenAiConfig | null {
  if (!env.OPENAI_BASE_URL) return null;
  return { baseUrl: env.OPENAI_BASE_URL, apiKey: env.OPENAI_API_KEY, model: env.OPENAI_MODEL };
}

const SIMULATED_MODEL = 'simulated-analyst (set OPENAI_BASE_URL for a real model)';

/** Builds the risk-scan job definition. */
export function createRiskScanJob(options: RiskScanOptions = {}) {
  const seconds = options.seconds ?? Number(process.env.RISK_SCAN_SECONDS ?? 12);
  if (!(seconds >= 0)) throw new TypeError(`risk-scan: seconds must be a number ≥ 0 (RISK_SCAN_SECONDS="${process.env.RISK_SCAN_SECONDS}").`);
  const openai = options.openai !== undefined ? options.openai : openAiFromEnv();

  return defineJob({
    name: 'risk-scan',
    input: riskScanInput,
    timeout: '15m', // the seed's background budget
    retry: { attempts: 2 },
    fallback: (input): RiskScanResult => estimate(input),
    async run(input, ctx): Promise<RiskScanResult> {
      await ctx.progress({ percent: 0, stage: 'reading', message: 'Reading the questionnaire' });
      const { score: value, level, findings } = score(input.answers);
      const text = openai ? await streamFromModel(openai, input, ctx) : await simulate(input, seconds, ctx);
      await ctx.progress({ percent: 100, stage: 'done', message: 'Assessment complete' });
      return { kind: 'ai', company: input.company, score: value, level, findings, sections: withDefaults(parseSections(text), input), text, model: openai ? (openai.model ?? 'gpt-4o-mini') : SIMULATED_MODEL };
    },
  });
}

/** A section the model left out is filled from the simulated text, so the result always has five. */
function withDefaults(sections: AssessmentSections, input: RiskScanInput): AssessmentSections {
  const missing = Object.values(sections).some((s) => !s);
  if (!missing) return sections;
  const defaults = parseSections(simulatedAssessment(input));
  return Object.fromEntries(Object.entries(sections).map(([k, v]) => [k, v || defaults[k as keyof AssessmentSections]])) as unknown as AssessmentSections;
}

/** The simulated model: stages, then the assessment token by token, `seconds` in all. Every wait takes the signal. */
async function simulate(input: RiskScanInput, seconds: number, ctx: JobContext): Promise<string> {
  const totalMs = seconds * 1000;
  await sleep(totalMs * 0.1, undefined, { signal: ctx.signal });
  await ctx.progress({ percent: 10, stage: 'scoring', message: `Weighing ${QUESTIONS.length} controls against common attack paths` });
  await sleep(totalMs * 0.2, undefined, { signal: ctx.signal });
  await ctx.progress({ percent: 30, stage: 'writing', message: 'Writing the assessment' });
  const text = simulatedAssessment(input);
  const tokens = text.match(/\s*\S+/g) ?? [];
  const writingMs = totalMs * 0.65;
  let reported = 30;
  for (let i = 0; i < tokens.length; i++) {
    await sleep(writingMs / tokens.length, undefined, { signal: ctx.signal });
    ctx.write(tokens[i]!);
    const percent = 30 + Math.floor(((i + 1) / tokens.length) * 65);
    if (percent >= reported + 10) {
      reported = percent;
      await ctx.progress({ percent, stage: 'writing', message: 'Writing the assessment' });
    }
  }
  await ctx.progress({ percent: 95, stage: 'reviewing', message: 'Checking the recommendations' });
  await sleep(totalMs * 0.05, undefined, { signal: ctx.signal });
  return text;
}

const SYSTEM_PROMPT = [
  'You are a cyber-security consultant for small businesses. Write a concise risk assessment in Markdown',
  'with exactly these five sections, each under a "## " heading with this exact title:',
  Object.values(SECTION_TITLES).join(', ') + '.',
  'Be specific to the answers; plain English; no preamble; at most 350 words in all.',
].join(' ');

function promptFor(input: RiskScanInput): string {
  const { score: value, level } = score(input.answers);
  const answers = QUESTIONS.map((q) => `- ${q.text} ${input.answers[q.id]}`).join('\n');
  return `Company: ${input.company}${input.sector ? ` (${input.sector})` : ''}\nRule-based risk score: ${value}/100 (${level}).\nQuestionnaire:\n${answers}`;
}

/** Streams the assessment from an OpenAI-compatible `/chat/completions` (`stream: true`), writing each token. */
async function streamFromModel(config: OpenAiConfig, input: RiskScanInput, ctx: JobContext): Promise<string> {
  await ctx.progress({ percent: 10, stage: 'connecting', message: 'Asking the model' });
  const response = await fetch(`${config.baseUrl.replace(/\/+$/, '')}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {}) },
    body: JSON.stringify({
      model: config.model ?? 'gpt-4o-mini',
      stream: true,
      temperature: 0.3,
      messages: [
        { role: 'system', content: SYSTEM_PROMPT },
        { role: 'user', content: promptFor(input) },
      ],
    }),
    signal: ctx.signal,
  });
  if (!response.ok || !response.body) {
    const body = (await response.text().catch(() => '')).slice(0, 300);
    const message = `The model endpoint answered ${response.status}: ${body}`;
    // 4xx (bad key, unknown model) will not get better on retry; 429 and 5xx may.
    throw response.status >= 400 && response.status < 500 && response.status !== 429 ? new NonRetryableError(message) : new Error(message);
  }
  await ctx.progress({ percent: 30, stage: 'writing', message: 'Writing the assessment' });
  const expectedChars = 2200;
  let text = '';
  let reported = 30;
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') return text;
      const token = (JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> }).choices?.[0]?.delta?.content;
      if (!token) continue;
      text += token;
      ctx.write(token);
      const percent = 30 + Math.min(60, Math.floor((text.length / expectedChars) * 60));
      if (percent >= reported + 5) {
        reported = percent;
        await ctx.progress({ percent, stage: 'writing', message: 'Writing the assessment' });
      }
    }
  }
  return text;
}

/** The job with the environment's settings, for `waitless dev --jobs examples/risk-scan/jobs.ts`. */
export const riskScan = createRiskScanJob();

export type { Answer, Answers, AssessmentSections, QuestionId };
export { SECTION_TITLES };
