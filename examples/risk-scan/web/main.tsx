/**
 * RiskScan's page: bundled by server.ts with esbuild (React from node_modules), served as /app.js.
 */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.tsx';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
