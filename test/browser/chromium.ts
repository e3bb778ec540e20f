/**
 * Headless Chromium for the browser tests: Debian's `chromium` (or `WAITLESS_CHROMIUM`) driven
 * by playwright-core. No browser is downloaded; a missing one fails the test with the command
 * that installs it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

const executablePath = process.env.WAITLESS_CHROMIUM ?? '/usr/bin/chromium';

/** Launches a fresh headless Chromium; close it in `after()`. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(executablePath)) {
    throw new Error(`No Chromium at ${executablePath}. Install it (apt-get install chromium) or set WAITLESS_CHROMIUM.`);
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}

/**
 * Saves a screenshot. With `WAITLESS_SCREENSHOTS=1` it goes to `docs/screenshots/<name>.png`
 * (the pictures the README shows); otherwise to a temporary folder, so a test run leaves the
 * repository untouched.
 */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = process.env.WAITLESS_SCREENSHOTS === '1' ? join(import.meta.dirname, '..', '..', 'docs', 'screenshots') : join(tmpdir(), 'waitless-screenshots');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
