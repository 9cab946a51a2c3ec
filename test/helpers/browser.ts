// Launches Debian's Chromium through playwright-core with WebGPU on SwiftShader, headless.
// playwright-core never downloads a browser here: we point it at the system one.
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

export const CHROMIUM_FLAGS = [
  '--headless=new',
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--enable-features=Vulkan',
  '--use-angle=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-dev-shm-usage',
];

export async function launchBrowser(): Promise<Browser> {
  const exe = process.env.CHROMIUM_PATH ?? CHROMIUM_CANDIDATES.find((p) => existsSync(p));
  if (!exe) {
    throw new Error('No Chromium found. On Debian 12 run `apt-get install chromium` as root (or `bash scripts/setup-system.sh`), or set CHROMIUM_PATH.');
  }
  return chromium.launch({ executablePath: exe, headless: true, args: CHROMIUM_FLAGS });
}

export const ARTIFACTS = 'test-artifacts';

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

/**
 * Collects console errors and page errors so a test can assert there were none. `expectedFrom`
 * lists URL prefixes whose failed loads are expected (the Hub probed offline, optional files a
 * Hub-layout server answers with 404): Chromium logs each as a console error.
 */
export function watchErrors(page: Page, expectedFrom: string[] = []): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location().url ?? '';
    if (/^Failed to load resource/.test(m.text()) && expectedFrom.some((p) => url.startsWith(p))) return;
    errors.push(`console: ${m.text()}${url ? ` (${url})` : ''}`);
  });
  return errors;
}
