import { useState } from 'react';
import { COMPANIES } from '../questions.ts';
import { type FormValues, Workspace } from './Workspace.tsx';

const TAB_KEY = 'risk-scan:tab';

function readTab(): string {
  try {
    const saved = sessionStorage.getItem(TAB_KEY);
    if (saved && COMPANIES.some((c) => c.id === saved)) return saved;
  } catch {
    // no storage: start on the first tab
  }
  return COMPANIES[0]!.id;
}

/**
 * Tabs, one per company (the "subject"). Each company has its own questionnaire and its own
 * job, kept in sessionStorage by useSubmitJob; switching tabs mid-job leaves that job running
 * and never shows its result under another company.
 */
export function App() {
  const [tab, setTab] = useState(readTab);
  const [forms, setForms] = useState<Record<string, FormValues>>(() =>
    Object.fromEntries(COMPANIES.map((c) => [c.id, { company: c.name, sector: c.sector, answers: { ...c.answers } }])),
  );
  const company = COMPANIES.find((c) => c.id === tab) ?? COMPANIES[0]!;
  const choose = (id: string) => {
    setTab(id);
    try {
      sessionStorage.setItem(TAB_KEY, id);
    } catch {
      // not kept across reloads, that is all
    }
  };

  return (
    <div className="app">
      <header className="top">
        <h1>
          Risk<span>Scan</span>
        </h1>
        <p>A security questionnaire for small businesses: an instant estimate now, the AI assessment as soon as it is written.</p>
      </header>
      <nav className="tabs" role="tablist" aria-label="Companies">
        {COMPANIES.map((c) => (
          <button key={c.id} role="tab" type="button" data-testid={`tab-${c.id}`} aria-selected={c.id === company.id} onClick={() => choose(c.id)}>
            {c.name}
          </button>
        ))}
      </nav>
      <Workspace
        subject={company.id}
        values={forms[company.id]!}
        onChange={(values) => setForms((all) => ({ ...all, [company.id]: values }))}
      />
    </div>
  );
}
