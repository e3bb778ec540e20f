/**
 * Just enough Markdown for the assessment: `##` headings, numbered and bulleted lists,
 * paragraphs and **bold**. Rendered as React elements (never as HTML), so model output
 * cannot inject markup.
 */
import type { ReactNode } from 'react';

function inline(text: string): ReactNode[] {
  return text.split(/(\*\*[^*]+\*\*)/g).map((part, i) => (part.startsWith('**') && part.endsWith('**') && part.length > 4 ? <strong key={i}>{part.slice(2, -2)}</strong> : part));
}

type Block = { kind: 'h' | 'p'; text: string } | { kind: 'ol' | 'ul'; items: string[] };

function blocks(text: string): Block[] {
  const out: Block[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const heading = /^#{1,3}\s+(.*)$/.exec(line);
    const numbered = /^\d+[.)]\s+(.*)$/.exec(line);
    const bullet = /^[-*]\s+(.*)$/.exec(line);
    const last = out[out.length - 1];
    if (heading) out.push({ kind: 'h', text: heading[1]! });
    else if (numbered || bullet) {
      const kind = numbered ? 'ol' : 'ul';
      const item = (numbered ?? bullet)![1]!;
      if (last && last.kind === kind) last.items.push(item);
      else out.push({ kind, items: [item] });
    } else out.push({ kind: 'p', text: line });
  }
  return out;
}

export function Markdown({ text, testId }: { text: string; testId?: string }) {
  return (
    <div className="md" data-testid={testId}>
      {blocks(text).map((block, i) => {
        if (block.kind === 'h') return <h3 key={i}>{inline(block.text)}</h3>;
        if (block.kind === 'p') return <p key={i}>{inline(block.text)}</p>;
        if (block.kind !== 'ol' && block.kind !== 'ul') return null;
        const items = block.items.map((item, j) => <li key={j}>{inline(item)}</li>);
        return block.kind === 'ol' ? <ol key={i}>{items}</ol> : <ul key={i}>{items}</ul>;
      })}
    </div>
  );
}
