// The production build in headless Chromium: the page finds a WebGPU adapter, shows its
// limits, and runs a compute shader from shaders/ inside the engine's Web Worker.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, screenshot, watchErrors } from '../helpers/browser.ts';

describe('studio page on WebGPU (SwiftShader)', () => {
  let browser: Browser;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    errors = watchErrors(page);
    await page.goto(inject('baseUrl'));
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('finds an adapter and shows the limits that matter for training', async () => {
    const status = page.getByTestId('adapter-status');
    await status.waitFor({ timeout: 60_000 });
    const limits = await page.getByTestId('adapter-limits').innerText();
    expect(limits).toMatch(/Largest storage binding\s+[\d.]+ (MiB|GiB)/);
    expect(limits).toMatch(/Largest buffer/);
    expect(limits).toMatch(/shader-f16\s+(yes|no)/);
  });

  it('runs the matmul shader in the worker and shows a correct result', async () => {
    await page.getByRole('button', { name: 'Run GPU self-test' }).click();
    const result = page.getByTestId('selftest');
    await page.waitForFunction(() => /passed|failed/.test(document.querySelector('[data-testid=selftest]')?.textContent ?? ''), null, { timeout: 120_000 });
    const text = await result.innerText();
    expect(text).toContain('Self-test passed: 96×80×72');
    const err = Number(/max error ([0-9.e+-]+)/.exec(text)?.[1]);
    expect(err).toBeLessThan(1e-4);
    await screenshot(page, 'adapter');
    expect(errors).toEqual([]);
  });
});

describe('studio page without WebGPU', () => {
  it('explains which browsers and settings provide WebGPU', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.addInitScript(() => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
        // Workers have their own navigator; the page's check comes first, but hide it there too if present.
        const wn = (globalThis as { WorkerNavigator?: { prototype: object } }).WorkerNavigator;
        if (wn) Object.defineProperty(wn.prototype, 'gpu', { get: () => undefined, configurable: true });
      });
      await page.goto(inject('baseUrl'));
      const notice = page.getByTestId('no-webgpu');
      await notice.waitFor({ timeout: 60_000 });
      const text = await notice.innerText();
      expect(text).toMatch(/Chrome/);
      expect(text).toMatch(/localhost/);
      await screenshot(page, 'no-webgpu');
    } finally {
      await browser.close();
    }
  });
});
