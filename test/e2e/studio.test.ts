// The studio end to end in headless Chromium (WebGPU on SwiftShader), against the production
// build: a tiny GPT-2 served in the Hub's URL layout is loaded, a corpus file dropped, some
// layers frozen, a few steps trained (with a pause that freezes one more group), the charts get
// points, samples and evaluation appear, and the downloaded zip is unpacked with Python's zipfile
// to check that frozen tensors equal the originals and trained ones changed. LoRA weights are
// trained in the page too and downloaded as PEFT's folder. Throughout, the page runs under its
// Content-Security-Policy with no violation, and until the user chooses the Hub it asks nothing
// of any origin but its own.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { ARTIFACTS, launchBrowser, screenshot, watchErrors } from '../helpers/browser.ts';
import { startHubServer, type HubServer } from '../helpers/hub-server.ts';
import { startCorsProxy, type CorsProxy } from './cors-proxy.ts';
import { tinyModel, type TinyModel } from './tiny-model.ts';

const REPO = 'studio-tests/tiny-gpt2';

/** Plain text for the corpus: a few paragraphs, so the validation split has whole documents' worth of windows. */
function corpusText(): string {
  const lines: string[] = [];
  for (let i = 0; i < 120; i++) lines.push(`Line ${i}: the quick brown fox jumps over the lazy dog, and the dog sleeps on.`);
  return lines.join('\n');
}

async function waitText(page: Page, testId: string, re: RegExp, timeout: number): Promise<string> {
  await page.waitForFunction(
    ([id, src]) => new RegExp(src).test(document.querySelector(`[data-testid="${id}"]`)?.textContent ?? ''),
    [testId, re.source] as const,
    { timeout, polling: 250 },
  );
  return page.getByTestId(testId).innerText();
}

async function setField(page: Page, testId: string, value: string): Promise<void> {
  const f = page.getByTestId(testId);
  await f.fill(value);
  await f.blur();
}

describe('the studio, end to end on SwiftShader', () => {
  let browser: Browser;
  let page: Page;
  let errors: string[];
  let hub: HubServer;
  let proxy: CorsProxy;
  let model: TinyModel;
  let work: string;
  /** every URL the page and its worker requested, in order */
  const requests: string[] = [];
  const cspViolations = () => page.evaluate(() => (window as unknown as { cspViolations?: string[] }).cspViolations ?? []);

  beforeAll(async () => {
    model = tinyModel();
    hub = await startHubServer({ [REPO]: { files: model.files } });
    proxy = await startCorsProxy(hub.endpoint);
    work = mkdtempSync(join(tmpdir(), 'studio-e2e-run-'));
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true });
    errors = watchErrors(page, [proxy.endpoint, 'https://huggingface.co']);
    page.on('request', (r) => requests.push(r.url()));
    // Violations are events in the page (and console errors, which watchErrors also records).
    await page.addInitScript(() => {
      const w = window as unknown as { cspViolations: string[] };
      w.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => w.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(`${inject('baseUrl')}?debug`);
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
    await hub?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('loads the built-in model and the sample corpus by itself, asking nothing of any other origin, under its CSP', async () => {
    await waitText(page, 'model-info', /Built-in demo GPT-2/, 120_000);
    const corpus = await waitText(page, 'corpus-info', /Tiny Shakespeare/, 120_000);
    expect(corpus).toMatch(/Tokens\s+[\d,.]+/);
    expect(await page.getByTestId('start').isEnabled()).toBe(true);
    // GPT-2 124M is one click away, and nothing was asked of the Hub to offer it.
    expect(await page.getByTestId('load-gpt2').innerText()).toMatch(/GPT-2 \(124M\)/);
    const origin = new URL(inject('baseUrl')).origin;
    const fetched = requests.filter((u) => /^https?:/.test(u));
    expect(fetched.length).toBeGreaterThan(3); // the page, its scripts, the worker, the model, the corpus
    expect(fetched.filter((u) => new URL(u).origin !== origin)).toEqual([]);
    // The policy is in the page, forbids eval, and nothing the page did was refused by it.
    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
    expect(csp).toMatch(/script-src 'self' 'wasm-unsafe-eval'[;]/);
    expect(csp).not.toMatch(/(^|\s)'unsafe-eval'/);
    expect(csp).toMatch(/connect-src 'self' https:\/\/huggingface\.co [^;]*http:\/\/127\.0\.0\.1:\*/);
    expect(await cspViolations()).toEqual([]);
    expect(errors).toEqual([]);
    await screenshot(page, 'studio-first-run');
  });

  it('loads a model from a server in the Hub\'s URL layout, with its own tokenizer', async () => {
    await page.getByTestId('model-choice-hub').click();
    await setField(page, 'hub-endpoint', proxy.endpoint);
    await setField(page, 'hub-repo', REPO);
    await page.getByTestId('load-model').click();
    const info = await waitText(page, 'model-info', new RegExp(REPO), 60_000);
    expect(info).toMatch(/2 blocks · 32 channels · 2 heads/);
    expect(info).toMatch(/257 · 64/);
    expect(info).toMatch(/Tokenizer\s+tokenizer\.json/);
    // The weights came through the Hub's redirect to its CDN.
    expect(hub.requests.map((r) => `${r.method} ${r.path}`)).toEqual(expect.arrayContaining([`GET /${REPO}/resolve/main/model.safetensors`, `GET /cdn/${REPO}/main/model.safetensors`]));
    // The layer stack: ln_f, blocks 1 and 0, embeddings.
    for (const g of [0, 1, 2, 3]) await page.getByTestId(`layer-${g}`).waitFor();
  });

  it('loads the same model from local files picked in the page', async () => {
    await page.getByTestId('model-choice-files').click();
    await page.getByTestId('model-files').setInputFiles(Object.entries(model.files).map(([name, bytes]) => ({ name, mimeType: 'application/octet-stream', buffer: Buffer.from(bytes) })));
    expect(await page.getByTestId('model-file-list').innerText()).toContain('model.safetensors');
    await page.getByTestId('load-model').click();
    const info = await waitText(page, 'model-info', /dropped files/, 60_000);
    expect(info).toMatch(/2 blocks · 32 channels · 2 heads/);
  });

  it('explains a corpus file that is not text, and keeps the corpus it had', async () => {
    await page.getByTestId('corpus-files').setInputFiles({ name: 'weights.pt', mimeType: 'application/octet-stream', buffer: Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0, 0xff, 0xfe]) });
    const notice = page.getByTestId('error').last();
    await notice.waitFor({ timeout: 30_000 });
    expect(await notice.innerText()).toMatch(/weights\.pt/);
    expect(await notice.innerText()).toMatch(/binary|UTF-8/i);
    expect(await page.getByTestId('corpus-info').innerText()).toMatch(/Tiny Shakespeare/);
    await notice.getByRole('button', { name: 'Dismiss this message' }).click();
    await expect.poll(() => page.getByTestId('error').count()).toBe(0);
  });

  it('tokenizes a dropped corpus file in the worker and shows its statistics', async () => {
    await page.getByTestId('corpus-files').setInputFiles({ name: 'fox.txt', mimeType: 'text/plain', buffer: Buffer.from(corpusText()) });
    const info = await waitText(page, 'corpus-info', /fox\.txt/, 60_000);
    // A byte-level tokenizer: one token per byte, plus EOS.
    expect(info).toMatch(new RegExp(`Tokens\\s+${(Buffer.byteLength(corpusText()) + 1).toLocaleString('en-US')}`));
    expect(info).toMatch(/Windows of 64/); // the default length, capped at the model's n_positions
  });

  it('freezes layers, and the trainable count and the memory estimate follow', async () => {
    const before = await page.getByTestId('trainable-count').innerText();
    await page.getByTestId('freeze-0').click(); // embeddings
    await page.getByTestId('freeze-1').click(); // block 0
    await expect.poll(() => page.getByTestId('trainable-count').innerText()).not.toBe(before);
    const frozenParams = paramSpecs(model.config).filter((s) => s.group <= 1).reduce((a, s) => a + s.numel, 0);
    const total = paramSpecs(model.config).reduce((a, s) => a + s.numel, 0);
    expect(await page.getByTestId('trainable-count').innerText()).toContain(`${(total - frozenParams).toLocaleString('en-US')} of ${total.toLocaleString('en-US')}`);
    expect(await page.getByTestId('freeze-0').getAttribute('aria-checked')).toBe('false');
    await page.getByTestId('memory-estimate').waitFor();
    expect(await page.getByTestId('memory-estimate').innerText()).toMatch(/Gradients[\s\S]*Total/);
  });

  it('explains an invalid setting where it is typed', async () => {
    await setField(page, 'set-seq', '100');
    const err = page.getByTestId('settings-panel').getByTestId('field-error');
    await expect.poll(() => err.allInnerTexts()).toContainEqual(expect.stringContaining('at most 64 positions'));
    expect(await page.getByTestId('start').isDisabled()).toBe(true);
    await setField(page, 'set-seq', '32');
    await expect.poll(() => err.count()).toBe(0);
  });

  it('trains, pauses (freezing one more group), resumes, and shows charts, samples and evaluation', async () => {
    await setField(page, 'set-steps', '8');
    await setField(page, 'set-batch', '2');
    await setField(page, 'set-eval-every', '4');
    await setField(page, 'set-sample-every', '4');
    await setField(page, 'set-lr', '0.01');
    await setField(page, 'sample-length', '12');
    await page.getByTestId('start').click();
    await waitText(page, 'run-state', /Training/, 60_000);
    await waitText(page, 'run-step', /^[2-7] \//, 120_000);
    await page.getByTestId('pause').click();
    await waitText(page, 'run-state', /Paused/, 60_000);
    const pausedAt = Number((await page.getByTestId('run-step').innerText()).split('/')[0]);
    expect(pausedAt).toBeGreaterThan(0);
    await page.getByTestId('freeze-3').click(); // ln_f: changes made while paused apply on resume
    await screenshot(page, 'studio-paused');
    await page.getByTestId('resume').click();
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expect(await page.getByTestId('run-step').innerText()).toBe('8 / 8');
    expect(Number(await page.getByTestId('chart-loss').getAttribute('data-points'))).toBeGreaterThanOrEqual(8);
    expect(Number(await page.getByTestId('chart-gradnorm').getAttribute('data-points'))).toBeGreaterThanOrEqual(8);
    expect(Number(await page.getByTestId('chart-lr').getAttribute('data-points'))).toBeGreaterThanOrEqual(8);
    expect(await page.getByTestId('run-tps').innerText()).toMatch(/tokens\/s/);
    // Samples at steps 0, 4 and 8; the last one side by side with the base model.
    const samples = page.getByTestId('sample');
    expect(await samples.count()).toBeGreaterThanOrEqual(3);
    expect(await samples.first().innerText()).toMatch(/step 8[\s\S]*Fine-tuned[\s\S]*Base model/i);
    // Evaluation before and after, as numbers.
    const before = Number(await page.getByTestId('eval-before-Perplexity').innerText());
    const after = Number(await page.getByTestId('eval-after-Perplexity').innerText());
    expect(before).toBeGreaterThan(1);
    expect(after).toBeGreaterThan(1);
    expect(after).toBeLessThan(before);
    expect(await page.getByTestId('eval-before-Loss').innerText()).toMatch(/^\d/);
    await screenshot(page, 'studio-trained');
    // The same page in the system's dark theme, and on a small laptop screen.
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'studio-trained-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1024, height: 768 });
    await screenshot(page, 'studio-trained-1024');
    await page.setViewportSize({ width: 1440, height: 1000 });
  });

  it('downloads the Hugging Face zip: frozen tensors are the originals, trained ones changed', async () => {
    const download = page.waitForEvent('download', { timeout: 120_000 });
    await page.getByTestId('export-hf-zip').click();
    const d = await download;
    expect(d.suggestedFilename()).toMatch(/\.zip$/);
    const zip = join(work, d.suggestedFilename());
    await d.saveAs(zip);
    const out = join(work, 'unzipped');
    mkdirSync(out, { recursive: true });
    // An independent reader: CPython's zipfile.
    const names = execFileSync('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; z.extractall(sys.argv[2]); print("\\n".join(z.namelist()))', zip, out], { encoding: 'utf8' }).trim().split('\n');
    const folder = names[0].split('/')[0];
    expect(names.map((n) => n.slice(folder.length + 1)).sort()).toEqual(['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const config = JSON.parse(readFileSync(join(out, folder, 'config.json'), 'utf8'));
    expect(config.vocab_size).toBe(257);
    const tensors = readSafetensors(new Uint8Array(readFileSync(join(out, folder, 'model.safetensors'))));
    for (const s of paramSpecs(model.config)) {
      const got = tensors.get(`transformer.${s.name}`)!.data;
      const orig = model.params.get(s.name)!;
      if (s.group <= 1) expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(orig.buffer, orig.byteOffset, orig.byteLength)), `${s.name} (frozen)`).toBe(0);
      else if (s.name.endsWith('.weight') || s.group === 2) expect(got.some((v, i) => v !== orig[i]), `${s.name} (trained)`).toBe(true);
    }
    expect(await page.getByTestId('export-done').innerText()).toMatch(/Saved .*\.zip/);
  });

  it('trains LoRA weights in the page and downloads them as a PEFT folder', async () => {
    await page.getByTestId('set-lora').check();
    await setField(page, 'set-lora-r', '2');
    await setField(page, 'set-steps', '3');
    await page.getByTestId('start').click();
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 240_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    const download = page.waitForEvent('download', { timeout: 120_000 });
    await page.getByTestId('export-lora').click();
    const d = await download;
    expect(d.suggestedFilename()).toMatch(/-lora\.zip$/);
    const zip = join(work, d.suggestedFilename());
    await d.saveAs(zip);
    const out = join(work, 'lora');
    mkdirSync(out, { recursive: true });
    const names = execFileSync('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; z.extractall(sys.argv[2]); print("\\n".join(z.namelist()))', zip, out], { encoding: 'utf8' }).trim().split('\n');
    const folder = names[0].split('/')[0];
    expect(names.map((n) => n.slice(folder.length + 1)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const cfg = JSON.parse(readFileSync(join(out, folder, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, target_modules: ['c_attn'], fan_in_fan_out: true, bias: 'none' });
    const tensors = readSafetensors(new Uint8Array(readFileSync(join(out, folder, 'adapter_model.safetensors'))));
    // PEFT's names and shapes for GPT-2's Conv1D c_attn (in C = 32, out 3C = 96): A (r, in), B (out, r).
    const keys = [...tensors.keys()].sort();
    expect(keys).toEqual([0, 1].flatMap((i) => ['A', 'B'].map((m) => `base_model.model.transformer.h.${i}.attn.c_attn.lora_${m}.weight`)).sort());
    for (const k of keys) expect(tensors.get(k)!.shape, k).toEqual(k.endsWith('lora_A.weight') ? [2, 32] : [96, 2]);
    // B starts at zero: block 1 (trainable) learned, block 0 (frozen since the first run) did not.
    expect(tensors.get('base_model.model.transformer.h.1.attn.c_attn.lora_B.weight')!.data.some((v) => v !== 0)).toBe(true);
    expect(tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.data.every((v) => v === 0)).toBe(true);
    await page.getByTestId('set-lora').uncheck();
  });

  it('tries the ONNX export in onnxruntime-web next to the engine: they agree token for token', async () => {
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await setField(page, 'try-export-prompt', 'the quick brown fox');
    await setField(page, 'try-export-tokens', '12');
    await page.getByTestId('try-export-run').click();
    const verdict = await waitText(page, 'try-export-verdict', /agree|differ/, 180_000);
    expect(verdict).toBe('They agree token for token (12 tokens).');
    expect(await page.getByTestId('try-export-engine-speed').innerText()).toMatch(/tokens\/s/);
    expect(await page.getByTestId('try-export-onnx-speed').innerText()).toMatch(/tokens\/s/);
    console.log(`[e2e] try the export: ${(await page.getByTestId('try-export-result').innerText()).split('\n').slice(0, 4).join(' | ')}`);
    // onnxruntime-web's WebAssembly came from the page's own origin, and nothing from elsewhere.
    const wasm = requests.filter((u) => u.endsWith('.wasm'));
    expect(wasm.length).toBeGreaterThan(0);
    for (const u of wasm) expect(new URL(u).origin).toBe(new URL(inject('baseUrl')).origin);
    await screenshot(page, 'studio-try-export');
  });

  it('downloads the ONNX zip in the layout transformers.js loads', async () => {
    const download = page.waitForEvent('download', { timeout: 120_000 });
    await page.getByTestId('export-onnx-zip').click();
    const d = await download;
    const zip = join(work, d.suggestedFilename());
    await d.saveAs(zip);
    const out = join(work, 'onnx-unzipped');
    const names = execFileSync('python3', ['-c', 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; z.extractall(sys.argv[2]); print("\\n".join(z.namelist()))', zip, out], { encoding: 'utf8' }).trim().split('\n');
    const folder = names[0].split('/')[0];
    expect(folder).toMatch(/-onnx$/);
    expect(names.map((n) => n.slice(folder.length + 1)).sort()).toEqual([
      'config.json', 'generation_config.json', 'onnx/decoder_model_merged.onnx', 'onnx/decoder_model_merged_quantized.onnx', 'tokenizer.json', 'tokenizer_config.json',
    ]);
    execFileSync('/usr/bin/python3', ['-c', 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', join(out, folder, 'onnx', 'decoder_model_merged.onnx')]);
  });

  it('trains with precision f16 where the adapter has shader-f16, and names the feature where it has not', async () => {
    const hasF16 = /shader-f16\s+yes/.test(await page.getByTestId('adapter-limits').innerText());
    await page.getByTestId('set-precision').selectOption('f16');
    if (!hasF16) {
      const err = page.getByTestId('settings-panel').getByTestId('field-error');
      await expect.poll(() => err.allInnerTexts()).toContainEqual(expect.stringContaining("needs the WebGPU feature 'shader-f16'"));
      expect(await page.getByTestId('start').isDisabled()).toBe(true);
    } else {
      await setField(page, 'set-steps', '2');
      await page.getByTestId('start').click();
      await waitText(page, 'run-state', /Finished|Failed|Stopped/, 180_000);
      expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
      expect(await page.getByTestId('run-step').innerText()).toBe('2 / 2');
    }
    await page.getByTestId('set-precision').selectOption('f32');
  });

  it('recovers from a lost device without reloading the page', async () => {
    await page.getByTestId('lose-device').click();
    await waitText(page, 'device-lost', /lost/, 30_000);
    await setField(page, 'set-steps', '2');
    await page.getByTestId('start').click();
    await waitText(page, 'run-state', /Finished|Failed|Stopped/, 180_000);
    expect(await page.getByTestId('run-state').innerText()).toBe('Finished');
    expect(await page.getByTestId('run-step').innerText()).toBe('2 / 2');
    await screenshot(page, 'studio-after-device-loss');
    expect(errors).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    mkdirSync(ARTIFACTS, { recursive: true });
  });
});
