/**
 * The security questionnaire, shared by the job (server) and the page (browser): plain data,
 * no imports, so both sides bundle it.
 */

/** How far a control is in place. */
export const ANSWERS = ['yes', 'partial', 'no'] as const;

export type Answer = (typeof ANSWERS)[number];

export interface Question {
  id: QuestionId;
  /** What the page asks. */
  text: string;
  /** A short name for the control, used in findings. */
  control: string;
  /** How much a missing control weighs in the risk score (the weights sum to 100). */
  weight: number;
  /** What a gap here leads to, in a sentence. */
  risk: string;
  /** The first thing to do about a gap. */
  fix: string;
  /** Rough effort of the fix. */
  effort: 'hours' | 'days' | 'weeks';
}

export const QUESTION_IDS = [
  'mfa',
  'backups',
  'restoreTest',
  'patching',
  'endpoint',
  'training',
  'passwords',
  'adminRights',
  'incidentPlan',
  'vendors',
  'encryption',
  'offboarding',
] as const;

export type QuestionId = (typeof QUESTION_IDS)[number];

export const QUESTIONS: readonly Question[] = [
  {
    id: 'mfa',
    text: 'Do all staff use multi-factor authentication for email and admin accounts?',
    control: 'Multi-factor authentication',
    weight: 15,
    risk: 'a single phished password opens email and admin consoles to an attacker',
    fix: 'Turn on MFA for every email and admin account, starting with owners and finance',
    effort: 'hours',
  },
  {
    id: 'backups',
    text: 'Are backups taken daily and kept offline or immutable?',
    control: 'Offline backups',
    weight: 14,
    risk: 'ransomware can encrypt the backups along with the live data',
    fix: 'Keep a daily backup copy that ransomware cannot reach (offline or immutable storage)',
    effort: 'days',
  },
  {
    id: 'restoreTest',
    text: 'Have you restored from a backup successfully in the last six months?',
    control: 'Tested restores',
    weight: 7,
    risk: 'backups may turn out unusable on the day they are needed',
    fix: 'Schedule a quarterly test restore of one critical system and time it',
    effort: 'hours',
  },
  {
    id: 'patching',
    text: 'Are operating systems and applications patched within 14 days of a release?',
    control: 'Timely patching',
    weight: 12,
    risk: 'known, published vulnerabilities stay open long enough to be exploited',
    fix: 'Enable automatic updates and review the laggards every two weeks',
    effort: 'days',
  },
  {
    id: 'endpoint',
    text: 'Does every laptop and server run endpoint protection (antivirus / EDR)?',
    control: 'Endpoint protection',
    weight: 9,
    risk: 'malware on an unprotected device goes unnoticed',
    fix: 'Deploy managed endpoint protection to every device and alert on gaps',
    effort: 'days',
  },
  {
    id: 'training',
    text: 'Do staff get phishing and security awareness training at least once a year?',
    control: 'Security awareness training',
    weight: 7,
    risk: 'staff are the easiest way in, through phishing and pretexting calls',
    fix: 'Run a short yearly training with a phishing simulation',
    effort: 'days',
  },
  {
    id: 'passwords',
    text: 'Does everyone use a password manager, with no shared or reused passwords?',
    control: 'Password manager',
    weight: 7,
    risk: 'reused passwords leaked elsewhere unlock your accounts',
    fix: 'Roll out a team password manager and retire shared spreadsheets',
    effort: 'days',
  },
  {
    id: 'adminRights',
    text: 'Are administrator rights limited to the few people who need them?',
    control: 'Least privilege',
    weight: 8,
    risk: 'one compromised everyday account can install software and change settings everywhere',
    fix: 'Remove local admin rights from daily accounts; use separate admin accounts',
    effort: 'days',
  },
  {
    id: 'incidentPlan',
    text: 'Is there a written incident response plan that names who does what?',
    control: 'Incident response plan',
    weight: 6,
    risk: 'the first hours of an incident are lost to working out who should act',
    fix: 'Write a one-page plan: who to call, what to isolate, how to reach your insurer',
    effort: 'hours',
  },
  {
    id: 'vendors',
    text: 'Do you check the security of vendors that hold your customer data?',
    control: 'Vendor risk review',
    weight: 5,
    risk: 'a breach at a supplier exposes your customers all the same',
    fix: 'List the vendors holding customer data and ask each for its security summary',
    effort: 'weeks',
  },
  {
    id: 'encryption',
    text: 'Are laptops and phones encrypted, with remote wipe available?',
    control: 'Device encryption',
    weight: 5,
    risk: 'a lost or stolen device is a data breach',
    fix: 'Turn on full-disk encryption and enrol devices in remote wipe',
    effort: 'hours',
  },
  {
    id: 'offboarding',
    text: 'Is all access removed on the day someone leaves?',
    control: 'Same-day offboarding',
    weight: 5,
    risk: 'former staff and contractors keep working logins',
    fix: 'Use an offboarding checklist that covers every system, run on the last day',
    effort: 'hours',
  },
];

/** The questionnaire's answers, one per question. */
export type Answers = Record<QuestionId, Answer>;

/** The companies the page offers as tabs, each with a plausible starting questionnaire. */
export interface Company {
  id: string;
  name: string;
  sector: string;
  answers: Answers;
}

export const COMPANIES: readonly Company[] = [
  {
    id: 'acme-dental',
    name: 'Acme Dental',
    sector: 'a dental practice with 14 staff',
    answers: {
      mfa: 'partial',
      backups: 'yes',
      restoreTest: 'no',
      patching: 'partial',
      endpoint: 'yes',
      training: 'no',
      passwords: 'partial',
      adminRights: 'no',
      incidentPlan: 'no',
      vendors: 'partial',
      encryption: 'yes',
      offboarding: 'partial',
    },
  },
  {
    id: 'globex-bakery',
    name: 'Globex Bakery',
    sector: 'a bakery chain with 40 staff and an online shop',
    answers: {
      mfa: 'no',
      backups: 'partial',
      restoreTest: 'no',
      patching: 'no',
      endpoint: 'partial',
      training: 'no',
      passwords: 'no',
      adminRights: 'partial',
      incidentPlan: 'no',
      vendors: 'no',
      encryption: 'partial',
      offboarding: 'yes',
    },
  },
  {
    id: 'initech-legal',
    name: 'Initech Legal',
    sector: 'a law firm with 25 staff',
    answers: {
      mfa: 'yes',
      backups: 'yes',
      restoreTest: 'yes',
      patching: 'yes',
      endpoint: 'yes',
      training: 'partial',
      passwords: 'yes',
      adminRights: 'yes',
      incidentPlan: 'partial',
      vendors: 'no',
      encryption: 'yes',
      offboarding: 'yes',
    },
  },
];

/** The five sections of the AI assessment (the seed's structured summary), each a short Markdown text. */
export interface AssessmentSections {
  executiveSummary: string;
  riskRating: string;
  keyFindings: string;
  strengths: string;
  recommendations: string;
}

export const SECTION_TITLES: Record<keyof AssessmentSections, string> = {
  executiveSummary: 'Executive summary',
  riskRating: 'Risk rating',
  keyFindings: 'Key findings',
  strengths: 'What is working',
  recommendations: 'Recommendations',
};
