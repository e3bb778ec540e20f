/** The page shell served at `/`: inline CSS, a root element, the bundled app. No CDN, no web fonts. */

const CSS = `
:root {
  --ink: #1c2430; --muted: #5b6675; --line: #dfe3ea; --bg: #f5f7fa; --card: #fff;
  --brand: #2f5bea; --brand-ink: #fff; --ok: #127a4a; --warn: #a05a00; --bad: #b42318; --crit: #7a0e0e;
  --radius: 10px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); line-height: 1.45;
}
* { box-sizing: border-box; }
body { margin: 0; }
.app { max-width: 1200px; margin: 0 auto; padding: 20px 24px 40px; }
header.top { display: flex; align-items: baseline; gap: 16px; margin-bottom: 14px; }
header.top h1 { font-size: 22px; margin: 0; letter-spacing: -0.01em; }
header.top h1 span { color: var(--brand); }
header.top p { margin: 0; color: var(--muted); font-size: 14px; }
nav.tabs { display: flex; gap: 6px; border-bottom: 1px solid var(--line); margin-bottom: 18px; }
nav.tabs button {
  border: 1px solid transparent; border-bottom: none; background: none; padding: 9px 16px; font: inherit;
  font-size: 14px; color: var(--muted); cursor: pointer; border-radius: 8px 8px 0 0; margin-bottom: -1px;
}
nav.tabs button[aria-selected="true"] { background: var(--card); border-color: var(--line); color: var(--ink); font-weight: 600; }
.workspace { display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 6fr); gap: 20px; align-items: start; }
@media (max-width: 900px) { .workspace { grid-template-columns: 1fr; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: var(--radius); padding: 16px 18px; }
.card h2 { font-size: 16px; margin: 0 0 10px; }
form.questionnaire fieldset { border: none; padding: 0; margin: 0; }
form.questionnaire fieldset:disabled { opacity: 0.7; }
.field { display: flex; flex-direction: column; gap: 4px; margin-bottom: 10px; font-size: 13px; color: var(--muted); }
.field input { font: inherit; font-size: 14px; color: var(--ink); padding: 7px 9px; border: 1px solid var(--line); border-radius: 6px; }
ol.questions { list-style: none; margin: 6px 0 12px; padding: 0; }
ol.questions li { display: flex; justify-content: space-between; align-items: center; gap: 10px; padding: 6px 0; border-top: 1px solid #eef0f4; font-size: 13px; }
.choice { display: inline-flex; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; flex: none; }
.choice label { padding: 3px 8px; font-size: 12px; cursor: pointer; color: var(--muted); }
.choice label + label { border-left: 1px solid var(--line); }
.choice input { position: absolute; opacity: 0; pointer-events: none; }
.choice label:has(input:checked) { background: var(--ink); color: #fff; }
.choice label:has(input:focus-visible) { outline: 2px solid var(--brand); outline-offset: -2px; }
.actions { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
button.primary, button.secondary {
  font: inherit; font-size: 14px; border-radius: 7px; padding: 8px 16px; cursor: pointer; border: 1px solid var(--brand);
}
button.primary { background: var(--brand); color: var(--brand-ink); font-weight: 600; }
button.secondary { background: #fff; color: var(--brand); }
button:disabled { opacity: 0.55; cursor: not-allowed; }
.alert { color: var(--bad); background: #fdecea; border: 1px solid #f5c2bd; border-radius: 6px; padding: 8px 10px; font-size: 13px; margin: 10px 0 0; }
.panel-head { display: flex; justify-content: space-between; align-items: center; gap: 12px; margin-bottom: 12px; }
.panel-head h2 { margin: 0; }
.meta { font-size: 12px; color: var(--muted); }
.meta code { font-size: 11px; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 999px; background: #eef1f6; color: var(--muted); text-transform: capitalize; }
.badge.running, .badge.queued { background: #e8eefd; color: var(--brand); }
.badge.completed { background: #e3f4ea; color: var(--ok); }
.badge.cancelled { background: #f1f1f1; color: #555; }
.badge.failed, .badge.timed_out { background: #fdecea; color: var(--bad); }
.progress { margin: 4px 0 14px; }
.progress .bar { height: 8px; background: #e8ebf0; border-radius: 999px; overflow: hidden; }
.progress .bar div { height: 100%; background: var(--brand); border-radius: 999px; transition: width 300ms ease; }
.progress .label { display: flex; justify-content: space-between; font-size: 12px; color: var(--muted); margin-top: 5px; }
.result-card { border: 1px solid var(--line); border-radius: var(--radius); padding: 14px 16px; margin-bottom: 12px; }
.result-card.estimate { background: #fbfcfe; border-style: dashed; }
.result-card.ai { border-color: #b9cbfb; box-shadow: 0 1px 0 #e8eefd; }
.result-card .kicker { font-size: 12px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: 0.04em; margin-bottom: 6px; }
.result-card.ai .kicker { color: var(--brand); }
.score { display: flex; align-items: baseline; gap: 10px; margin-bottom: 8px; }
.score strong { font-size: 28px; }
.level { font-weight: 600; text-transform: capitalize; }
.level.low { color: var(--ok); } .level.moderate { color: var(--warn); } .level.high { color: var(--bad); } .level.critical { color: var(--crit); }
ul.findings { margin: 0; padding-left: 18px; font-size: 13px; }
ul.findings li { margin: 3px 0; }
.sev { font-size: 11px; font-weight: 700; text-transform: uppercase; margin-right: 4px; }
.sev.critical { color: var(--crit); } .sev.high { color: var(--bad); } .sev.medium { color: var(--warn); } .sev.low { color: var(--muted); }
.stream { font-size: 13px; color: #334; background: #f7f8fb; border-radius: 8px; padding: 10px 12px; max-height: 320px; overflow: auto; }
.stream .caret { display: inline-block; width: 7px; height: 14px; background: var(--brand); vertical-align: -2px; animation: blink 1s steps(2) infinite; }
@keyframes blink { 50% { opacity: 0; } }
.md h3 { font-size: 14px; margin: 12px 0 4px; }
.md h3:first-child { margin-top: 0; }
.md p, .md li { font-size: 13px; margin: 4px 0; }
.md ol, .md ul { padding-left: 20px; margin: 4px 0; }
.placeholder { color: var(--muted); font-size: 14px; }
.notice { font-size: 13px; padding: 8px 10px; border-radius: 6px; background: #f1f1f1; color: #444; margin-bottom: 12px; }
`;

/** The HTML of the page. */
export function pageHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RiskScan — a Waitless example</title>
<link rel="icon" href="data:,">
<style>${CSS}</style>
</head>
<body>
<div id="root"></div>
<script type="module" src="/app.js"></script>
</body>
</html>`;
}
