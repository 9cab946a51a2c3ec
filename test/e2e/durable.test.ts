// Durable runs in headless Chromium (WebGPU on SwiftShader, the browser's real origin private
// file system), against the production build: a run on dropped model files and a dropped corpus
// is paused (and so saved), the tab is reloaded, the page offers to resume it, and it finishes
// with weights equal, bit for bit, to the same run never reloaded; then a run whose GPU device is
// lost mid-run resumes from its last save with one button, to the same weights again; a run whose
// loss turns NaN (a poisoned weight) pauses at that step and goes back to its save at a lower rate;
// the Tune button keeps matmul tiles in OPFS, and the next run uses and records them.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { launchBrowser, screenshot, watchErrors } from '../helpers/browser.ts';
import { tinyModel, type TinyModel } from './tiny-model.ts';

function corpusText(): string {
  return Array.from({ length: 120 }, (_, i) => `Line ${i}: the quick brown fox jumps over the lazy dog, and the dog sleeps on.`).join('\n');
}

async function waitText(page: Page, testId: string, re: RegExp, timeout: number): Promise<string> {
  await page.waitForFunction(
    ([id, src]) => [...document.querySelectorAll(`[data-testid="${id}"]`)].some((e) => new RegExp(src).test(e.textContent ?? '')),
    [testId, re.source] as const,
    { timeout, polling: 250 },
  );
  return page.getByTestId(testId).first().innerText();
}

async function setField(page: Page, testId: string, value: string): Promise<void> {
  const f = page.getByTestId(testId);
  await f.fill(value);
  await f.blur();
}

describe('durable runs in the page, end to end on SwiftShader', () => {
  let browser: Browser;
  let page: Page;
  let errors: string[];
  let model: TinyModel;
  let work: string;
  let uninterrupted: Map<string, Float32Array>;

  const loadInputs = async () => {
    await page.getByTestId('model-choice-files').click();
    await page.getByTestId('model-files').setInputFiles(Object.entries(model.files).map(([name, bytes]) => ({ name, mimeType: 'application/octet-stream', buffer: Buffer.from(bytes) })));
    await page.getByTestId('load-model').click();
    await waitText(page, 'model-info', /dropped files/, 60_000);
    await page.getByTestId('corpus-files').setInputFiles({ name: 'fox.txt', mimeType: 'text/plain', buffer: Buffer.from(corpusText()) });
    await waitText(page, 'corpus-info', /fox\.txt/, 60_000);
  };

  const settings = async () => {
    await setField(page, 'set-steps', '8');
    await setField(page, 'set-batch', '2');
    await setField(page, 'set-seq', '32');
    await setField(page, 'set-eval-every', '4');
    await setField(page, 'set-sample-every', '0');
    await setField(page, 'set-lr', '0.01');
    await setField(page, 'set-dropout', '0.1');
    await setField(page, 'set-autosave', '0');
  };

  const exportWeights = async (): Promise<Map<string, Float32Array>> => {
    const download = page.waitForEvent('download', { timeout: 120_000 });
    await page.getByTestId('export-safetensors').click();
    const d = await download;
    const file = join(work, `${Date.now()}-${d.suggestedFilename()}`);
    await d.saveAs(file);
    return new Map([...readSafetensors(new Uint8Array(readFileSync(file)))].map(([k, v]) => [k, v.data as Float32Array]));
  };

  const expectSameBits = (a: Map<string, Float32Array>, b: Map<string, Float32Array>) => {
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [k, v] of a) {
      const w = b.get(k)!;
      expect(Buffer.compare(Buffer.from(w.buffer, w.byteOffset, w.byteLength), Buffer.from(v.buffer, v.byteOffset, v.byteLength)), k).toBe(0);
    }
  };

  /** Starts a run and pauses it after step 3 or later; the pause saves it. Returns the step saved. */
  const trainAndPause = async (): Promise<number> => {
    await page.getByTestId('start').click();
    await waitText(page, 'run-state', /Training/, 60_000);
    await waitText(page, 'run-step', /^[3-7] \//, 120_000);
    await page.getByTestId('pause').click();
    await waitText(page, 'run-state', /Paused/, 60_000);
    const saved = await waitText(page, 'last-save', /Saved at step \d+/, 60_000);
    const step = Number(/step (\d+)/.exec(saved)![1]);
    expect(Number((await page.getByTestId('run-step').innerText()).split('/')[0])).toBe(step);
    return step;
  };

  beforeAll(async () => {
    model = tinyModel();
    work = mkdtempSync(join(tmpdir(), 'studio-e2e-durable-'));
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true });
    errors = watchErrors(page, ['https://huggingface.co']);
    await page.goto(`${inject('baseUrl')}?debug`);
    await waitText(page, 'model-info', /Built-in demo GPT-2/, 120_000);
  });

  afterAll(async () => {
    await browser?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('a run never reloaded, saved at short intervals as it trains: the reference weights, and its save is listed with its size', async () => {
    await loadInputs();
    await settings();
    // Saves at (almost) every step boundary, written from staged GPU copies while training goes on;
    // they must not change what it trains (the later runs are compared with this one).
    await setField(page, 'set-autosave', '0.0001');
    await page.getByTestId('start').click();
    await waitText(page, 'last-save', /Saved at step [1-7] \(/, 120_000); // an interval save, before the end
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    const log = page.getByTestId('run-log');
    expect((await log.count()) ? await log.textContent() : '').not.toMatch(/Autosave: a copy/);
    uninterrupted = await exportWeights();
    await waitText(page, 'saved-run', /step 8 of 8 \(finished/, 30_000);
    expect(await page.getByTestId('storage').innerText()).toMatch(/used of .* allowed/);
  });

  it('reloads mid-run, offers to resume, and finishes with the same weights bit for bit', async () => {
    await loadInputs();
    await settings();
    const step = await trainAndPause();
    await page.reload();
    const offer = await waitText(page, 'resume-offer', new RegExp(`Resume dropped files on fox\\.txt from step ${step} of 8 \\(saved \\d\\d:\\d\\d\\)`), 120_000);
    expect(offer).toContain(`step ${step} of 8`);
    await screenshot(page, 'studio-resume-offer');
    await page.getByTestId('resume-offer').first().getByRole('button').click();
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expect(await page.getByTestId('run-step').innerText()).toBe('8 / 8');
    // The chart has every step, from before and after the reload.
    expect(Number(await page.getByTestId('chart-loss').getAttribute('data-points'))).toBeGreaterThanOrEqual(8);
    expectSameBits(uninterrupted, await exportWeights());
  });

  it('a non-finite loss pauses the run at that step; going back to the last save at a chosen rate finishes it', async () => {
    await loadInputs();
    await settings();
    const step = await trainAndPause();
    // The debug button writes NaN into ln_f.weight: the next step's loss is non-finite.
    await page.getByTestId('poison-weights').click();
    await waitText(page, 'run-log', /ln_f\.weight\[0\] is now NaN/, 30_000);
    await page.getByTestId('resume').click();
    const box = await waitText(page, 'diverged', new RegExp(`Paused at step ${step + 1}: the loss became non-finite`), 120_000);
    expect(box).toContain(`The weights now are those after step ${step}; the run's last save, at step ${step}, was not written over.`);
    expect(await page.getByTestId('run-state').innerText()).toBe('Paused');
    expect(await page.getByTestId('run-step').innerText()).toBe(`${step} / 8`);
    // Resume is not offered (it would meet the same NaN): only going back or stopping.
    expect(await page.getByTestId('resume').count()).toBe(0);
    expect(await page.getByTestId('diverged-factor').inputValue()).toBe('0.5');
    await screenshot(page, 'studio-diverged');
    await page.getByTestId('diverged-factor').fill('0.25');
    expect(await page.getByTestId('diverged').innerText()).toContain('= 0.00250');
    await page.getByTestId('diverged-back').click();
    await waitText(page, 'run-state', /Training/, 120_000);
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expect(await page.getByTestId('run-step').innerText()).toBe('8 / 8');
    expect(await page.getByTestId('diverged').count()).toBe(0);
    const after = await exportWeights();
    for (const [k, v] of after) expect(v.every(Number.isFinite), k).toBe(true);
  });

  it('after a lost device, one button resumes from the last save on a new device, to the same weights', async () => {
    await loadInputs();
    await settings();
    await trainAndPause();
    await page.getByTestId('lose-device').click();
    await waitText(page, 'device-lost', /lost/, 30_000);
    await page.getByTestId('resume-after-loss').click();
    // The lost run shows Stopped until the resumed one starts: wait for the resumed run's end.
    await waitText(page, 'run-state', /Training/, 120_000);
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expectSameBits(uninterrupted, await exportWeights());
    expect(errors).toEqual([]);
  });

  it('tunes matmul tiles in the page and keeps them in OPFS for this adapter; the next run uses and records them, to the same weights', async () => {
    await page.getByRole('button', { name: 'Tune matmul tiles' }).click();
    const shown = await waitText(page, 'tune', /Tuned; the next runs use:|Tuning failed/, 600_000);
    expect(shown).toMatch(/Tuned; the next runs use: nn/);
    const readCache = () => page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      return (await (await root.getFileHandle('studio-kernel-tuning.json')).getFile()).text();
    });
    const cache = JSON.parse(await readCache()) as { format: string; adapters: Record<string, { matmul: Record<string, string>; shapes: string }> };
    expect(cache.format).toBe('webgpu-studio-kernel-tuning');
    const entries = Object.values(cache.adapters);
    expect(entries).toHaveLength(1);
    expect(entries[0].shapes).toMatch(/dropped files, B·T = 512/);
    for (const cls of ['nn', 'nt', 'tn']) expect(entries[0].matmul[cls], cls).toMatch(/^\d+x\d+x\d+-\d+x\d+(-v4)?$/);
    // Whatever tuning chose (on SwiftShader it may well be the default), put a tiling that differs
    // from the default in the page's cache, so the run below shows it read the cache: every tiling
    // gives the same numbers, so the weights must still equal the reference run's.
    const chosen = '32x64x32-8x8-v4';
    const allChosen = (m: Record<string, string>) => Object.fromEntries(Object.keys(m).map((c) => [c, chosen]));
    const edited = Object.fromEntries(Object.entries(cache.adapters).map(([k, e]) => [k, { ...e, matmul: allChosen(e.matmul) }]));
    await page.evaluate(async ([text]) => {
      const root = await navigator.storage.getDirectory();
      const w = await (await root.getFileHandle('studio-kernel-tuning.json')).createWritable();
      await w.write(text);
      await w.close();
    }, [JSON.stringify({ ...cache, adapters: edited })] as const);
    await loadInputs();
    await settings();
    await page.getByTestId('start').click();
    await waitText(page, 'run-state', /Training/, 60_000);
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expectSameBits(uninterrupted, await exportWeights());
    // The newest saved run (listed first) records the tiles it ran with.
    const download = page.waitForEvent('download', { timeout: 120_000 });
    await page.getByTestId('saved-run-download').first().click();
    const zip = join(work, `tuned-${Date.now()}.zip`);
    await (await download).saveAs(zip);
    const state = JSON.parse(execFileSync('python3', ['-c', [
      'import sys, zipfile',
      'z = zipfile.ZipFile(sys.argv[1])',
      'print(z.read([n for n in z.namelist() if n.endswith("/trainer_state.json")][0]).decode())',
    ].join('\n'), zip], { encoding: 'utf8' })) as { kernels: { matmul: Record<string, string> } };
    for (const cls of Object.keys(entries[0].matmul)) expect(state.kernels.matmul[cls], cls).toBe(chosen);
    expect(errors).toEqual([]);
  }, 900_000); // the tuning run compiles and times every candidate tiling on a software adapter
});
