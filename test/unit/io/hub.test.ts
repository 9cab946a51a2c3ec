// The Hub client against a local server in the Hub's URL layout (test/helpers/hub-server.ts):
// ids and URLs, LFS redirects, progress, 404/401 messages, interrupted downloads (resumed with a
// Range request, restarted when the server ignores it, given up after the retries with the bytes
// kept), sharded and .bin-only repositories, and a second load that makes no request at all.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HostParams } from '../../../src/engine/model/params.ts';
import { memoryCache, opfsCache, type ModelCache } from '../../../src/io/cache.ts';
import { loadCheckpoint, UnsupportedCheckpointFormatError } from '../../../src/io/checkpoint.ts';
import {
  DownloadInterruptedError,
  downloadHubFile,
  HubAccessError,
  HubNetworkError,
  HubNotFoundError,
  hubFileUrl,
  InvalidHubIdError,
  loadHubModel,
  looksLikeHubId,
  parseHubId,
  RESUME_MIN_BYTES,
  type DownloadProgress,
  type HubModelOptions,
} from '../../../src/io/hub.ts';
import { nodeCache } from '../../../src/io/node-cache.ts';
import { tokenizerFromModelFiles } from '../../../src/io/tokenizer.ts';
import { fakeOpfs } from '../../helpers/fake-opfs.ts';
import { hubFixtures, startHubServer, type HubFixtures, type HubServer } from '../../helpers/hub-server.ts';

let server: HubServer;
let fx: HubFixtures;
let tmp: string;

beforeAll(async () => {
  fx = hubFixtures();
  server = await startHubServer(fx.repos);
  tmp = await mkdtemp(join(tmpdir(), 'hub-test-'));
});
afterAll(async () => {
  await server.close();
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  server.requests.length = 0;
  server.rangeSupport = true;
});

const fast = (extra: HubModelOptions = {}): HubModelOptions => ({ endpoint: server.endpoint, retryDelayMs: 0, progressIntervalMs: 0, ...extra });

function expectSameBits(got: HostParams, want: HostParams): void {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [name, w] of want) {
    const g = got.get(name)!;
    expect(g.length, name).toBe(w.length);
    const gb = new Uint32Array(g.buffer, g.byteOffset, g.length);
    const wb = new Uint32Array(w.buffer, w.byteOffset, w.length);
    let diff = -1;
    for (let i = 0; i < wb.length && diff < 0; i++) if (gb[i] !== wb[i]) diff = i;
    expect(diff, `${name}: first differing element`).toBe(-1);
  }
}

describe('Hub ids and URLs', () => {
  it.each([
    ['openai-community/gpt2', { repo: 'openai-community/gpt2', revision: 'main' }],
    ['distilbert/distilgpt2@v1.0', { repo: 'distilbert/distilgpt2', revision: 'v1.0' }],
    ['me/my_model.v2@refs/pr/3', { repo: 'me/my_model.v2', revision: 'refs/pr/3' }],
    ['  me/x@0123abc  ', { repo: 'me/x', revision: '0123abc' }],
  ])('parses %s', (text, want) => {
    expect(parseHubId(text)).toEqual(want);
    expect(looksLikeHubId(text)).toBe(true);
  });

  it.each([
    ['gpt2', /owner\/name/],
    ['a/b/c', /owner\/name/],
    ['./models/gpt2', /owner\/name/],
    ['.x/gpt2', /letters, digits/],
    ['owner/na me', /letters, digits/],
    ['owner/a--b', /"--"/],
    ['owner/name@', /revision after "@" is empty/],
    ['owner/name@../x', /not a branch, tag or commit/],
    ['/abs/path', /owner\/name/],
  ])('refuses %s', (text, why) => {
    expect(() => parseHubId(text)).toThrow(InvalidHubIdError);
    expect(() => parseHubId(text)).toThrow(why);
    expect(looksLikeHubId(text)).toBe(false);
  });

  it('builds resolve URLs as huggingface_hub does (revision quoted whole, file by segment)', () => {
    expect(hubFileUrl('https://huggingface.co/', 'openai-community/gpt2', 'main', 'config.json'))
      .toBe('https://huggingface.co/openai-community/gpt2/resolve/main/config.json');
    expect(hubFileUrl('http://127.0.0.1:9/mirror', 'a/b', 'refs/pr/1', 'onnx/model #1.onnx'))
      .toBe('http://127.0.0.1:9/mirror/a/b/resolve/refs%2Fpr%2F1/onnx/model%20%231.onnx');
  });
});

describe('loading a model from the Hub layout', () => {
  it('follows the LFS redirect, reads config, tokenizer and weights bit for bit', async () => {
    const cache = memoryCache();
    const m = await loadHubModel('tiny/gpt2', cache, fast());
    expect(m.config).toEqual(fx.tinyConfig);
    expect(m.files.names().sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(m.generationConfig).toBeUndefined();
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.tinyParams);
    const { tokenizer, source } = await tokenizerFromModelFiles(m.tokenizerFiles);
    expect(source).toBe('tokenizer.json');
    expect(tokenizer.vocabSize).toBe(257);
    // The weights came through the redirect to the CDN path.
    const paths = server.requests.map((r) => r.path);
    expect(paths).toContain('/tiny/gpt2/resolve/main/model.safetensors');
    expect(paths).toContain('/cdn/tiny/gpt2/main/model.safetensors');
    // The client counts fetches; a redirect it follows is one fetch and two requests here.
    expect(m.requests).toBe(server.requests.filter((r) => !r.path.startsWith('/cdn/')).length);
  });

  it('a second load of the same repo and revision makes no request (memory and disk caches)', async () => {
    for (const cache of [memoryCache(), nodeCache(join(tmp, 'second-load')), opfsCache(fakeOpfs().root, { partBytes: 100_000 })]) {
      const first = await loadHubModel('tiny/gpt2', cache, fast());
      const before = server.requests.length;
      expect(before).toBeGreaterThan(0);
      const events: DownloadProgress[] = [];
      const again = await loadHubModel('tiny/gpt2', cache, fast({ onProgress: (p) => events.push(p) }));
      expect(server.requests.length - before).toBe(0);
      expect(again.requests).toBe(0);
      expect(events.length).toBeGreaterThan(0);
      expect(events.every((e) => e.cached && e.done)).toBe(true);
      expectSameBits(await loadCheckpoint(again.config, again.files), await loadCheckpoint(first.config, first.files));
      server.requests.length = 0;
    }
  });

  it('reports monotonic progress with size, rate and time left, ending at the file size', async () => {
    const events: DownloadProgress[] = [];
    await loadHubModel('tiny/big', memoryCache(), fast({ onProgress: (p) => events.push(p) }));
    const weights = events.filter((e) => e.file === 'model.safetensors');
    const size = fx.repos['tiny/big'].files['model.safetensors'].length;
    expect(weights.length).toBeGreaterThan(2);
    for (let i = 1; i < weights.length; i++) expect(weights[i].bytes).toBeGreaterThanOrEqual(weights[i - 1].bytes);
    for (const e of weights) {
      expect(e.total).toBe(size);
      expect(e.rate).toBeGreaterThanOrEqual(0);
      if (e.eta !== null) expect(e.eta).toBeGreaterThanOrEqual(0);
      expect(e.cached).toBe(false);
    }
    expect(weights.at(-1)).toMatchObject({ bytes: size, done: true, eta: 0 });
    expect(weights.filter((e) => e.done)).toHaveLength(1);
  });

  it('loads a sharded model (index + shards)', async () => {
    const m = await loadHubModel('tiny/sharded', memoryCache(), fast());
    expect(m.files.names()).toEqual(expect.arrayContaining(['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']));
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.tinyParams);
    // model.safetensors was asked for once (404), then remembered as absent: no request next time.
    const cache = memoryCache();
    await loadHubModel('tiny/sharded', cache, fast());
    server.requests.length = 0;
    await loadHubModel('tiny/sharded', cache, fast());
    expect(server.requests).toHaveLength(0);
  });

  it('follows a renamed repository\'s relative redirect', async () => {
    const m = await loadHubModel('old/name', memoryCache(), fast());
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.tinyParams);
    expect(server.requests.some((r) => r.path.startsWith('/old/name/'))).toBe(true);
    expect(server.requests.some((r) => r.path.startsWith('/tiny/gpt2/'))).toBe(true);
  });

  it('quotes a revision with slashes (refs/pr/1)', async () => {
    const m = await loadHubModel('tiny/gpt2@refs/pr/1', memoryCache(), fast());
    expect(m.ref.revision).toBe('refs/pr/1');
    expect(server.requests[0].path).toBe('/tiny/gpt2/resolve/refs%2Fpr%2F1/config.json');
  });

  it('with weights: false fetches config and tokenizer only', async () => {
    const m = await loadHubModel('tiny/gpt2', memoryCache(), fast({ weights: false }));
    expect(m.tokenizerFiles.map((f) => f.name).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    expect(server.requests.some((r) => r.path.includes('safetensors'))).toBe(false);
  });
});

describe('errors the Hub can answer with', () => {
  it('404 names the repo, file and revision', async () => {
    const p = downloadHubFile({ repo: 'tiny/gpt2', revision: 'main', file: 'missing.json' }, memoryCache(), fast());
    await expect(p).rejects.toThrow(HubNotFoundError);
    await expect(p).rejects.toThrow(/missing\.json was not found in tiny\/gpt2 at revision 'main' \(HTTP 404, http:\/\/127\.0\.0\.1:\d+\/tiny\/gpt2\/resolve\/main\/missing\.json\)/);
    expect(server.requests).toHaveLength(1); // a 404 is final: not retried
  });

  it('an unknown revision says so', async () => {
    await expect(loadHubModel('tiny/gpt2@nope', memoryCache(), fast())).rejects.toThrow(/Revision 'nope' does not exist in tiny\/gpt2/);
  });

  it('an unknown repository is 401 RepoNotFound: check the id', async () => {
    const p = loadHubModel('nobody/nothing', memoryCache(), fast());
    await expect(p).rejects.toThrow(HubAccessError);
    await expect(p).rejects.toThrow(/Repository nobody\/nothing was not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\)\. Check the id/);
  });

  it('a .bin-only repository gets the safetensors message, without downloading the .bin', async () => {
    const p = loadHubModel('tiny/bin-only', memoryCache(), fast());
    await expect(p).rejects.toThrow(UnsupportedCheckpointFormatError);
    await expect(p).rejects.toThrow(/only PyTorch pickle weights \(pytorch_model\.bin\).*refs\/pr\/N.*safe_serialization=True/);
    const bin = server.requests.filter((r) => r.path.endsWith('pytorch_model.bin'));
    expect(bin.length).toBeGreaterThan(0);
    expect(bin.every((r) => r.method === 'HEAD')).toBe(true);
  });

  it('an unreachable endpoint is a network error after the retries', async () => {
    const closed = await startHubServer({});
    const endpoint = closed.endpoint;
    await closed.close();
    const p = loadHubModel('tiny/gpt2', memoryCache(), { endpoint, retries: 1, retryDelayMs: 0 });
    await expect(p).rejects.toThrow(HubNetworkError);
    await expect(p).rejects.toThrow(/Could not reach http:\/\/127\.0\.0\.1:\d+ to download config\.json of tiny\/gpt2/);
  });
});

describe('interrupted downloads', () => {
  const size = () => fx.repos['tiny/big'].files['model.safetensors'].length;
  const weightGets = () => server.requests.filter((r) => r.path === '/cdn/tiny/big/main/model.safetensors' && r.method === 'GET');

  it('resumes with a Range request after the bytes that arrived (a stalled connection)', async () => {
    const after = RESUME_MIN_BYTES + 12345;
    expect(size()).toBeGreaterThan(after + 1000);
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 1, after, mode: 'stall' });
    const events: DownloadProgress[] = [];
    const m = await loadHubModel('tiny/big', memoryCache(), fast({ stallTimeoutMs: 1000, onProgress: (p) => events.push(p) }));
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.bigParams);
    expect(weightGets().map((r) => r.range)).toEqual([null, `bytes=${after}-`]);
    const w = events.filter((e) => e.file === 'model.safetensors');
    for (let i = 1; i < w.length; i++) expect(w[i].bytes).toBeGreaterThanOrEqual(w[i - 1].bytes);
    expect(w.at(-1)).toMatchObject({ bytes: size(), done: true, attempt: 2 });
  });

  it('detects a connection closed before Content-Length and completes the file on a retry', async () => {
    const after = RESUME_MIN_BYTES + 12345;
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 1, after });
    const m = await loadHubModel('tiny/big', memoryCache(), fast());
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.bigParams);
    const gets = weightGets();
    expect(gets).toHaveLength(2);
    // The second request resumes after what the client received (all of it, unless the failing
    // fetch body dropped some queued chunks; below RESUME_MIN_BYTES it restarts instead).
    const from = gets[1].range === null ? 0 : Number(/^bytes=(\d+)-$/.exec(gets[1].range)![1]);
    expect(from).toBeLessThanOrEqual(after);
    if (gets[1].range !== null) expect(from).toBeGreaterThanOrEqual(RESUME_MIN_BYTES);
  });

  it('restarts cleanly when the server answers a resume with the whole file', async () => {
    server.rangeSupport = false;
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 1, after: RESUME_MIN_BYTES + 1, mode: 'stall' });
    const m = await loadHubModel('tiny/big', memoryCache(), fast({ stallTimeoutMs: 1000 }));
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.bigParams);
    expect(weightGets().map((r) => r.range)).toEqual([null, `bytes=${RESUME_MIN_BYTES + 1}-`]);
  });

  it('restarts small partial downloads instead of resuming them', async () => {
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 1, after: 1000 });
    const m = await loadHubModel('tiny/big', memoryCache(), fast());
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.bigParams);
    expect(weightGets().map((r) => r.range)).toEqual([null, null]);
  });

  it('detects a body shorter than its Content-Length that ends without an error (a proxy that cuts it)', async () => {
    // The first response of config.json claims 100 more bytes than it delivers, then ends cleanly.
    let cut = true;
    const fetchFn: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!cut || !String(input).endsWith('/config.json')) return res;
      cut = false;
      const body = new Uint8Array(await res.arrayBuffer());
      const half = body.subarray(0, body.length >> 1);
      return new Response(half, { status: 200, headers: { 'content-length': String(body.length) } });
    };
    const events: DownloadProgress[] = [];
    const m = await loadHubModel('tiny/gpt2', memoryCache(), fast({ fetch: fetchFn, weights: false, onProgress: (p) => events.push(p) }));
    expect(m.config).toEqual(fx.tinyConfig);
    expect(events.find((e) => e.file === 'config.json' && e.done)).toMatchObject({ attempt: 2 });
    // With no retries left it is an error that says what happened.
    cut = true;
    await expect(loadHubModel('tiny/gpt2', memoryCache(), fast({ fetch: fetchFn, weights: false, retries: 0 })))
      .rejects.toThrow(/config\.json of tiny\/gpt2 .*interrupted 1 time in a row \(last: the connection closed after \d+ of \d+ bytes\)/);
  });

  it('retries a 503 and succeeds', async () => {
    let fail = 2;
    const fetchFn: typeof fetch = async (input, init) => {
      if (fail > 0 && String(input).endsWith('/config.json')) {
        fail--;
        return new Response('busy', { status: 503, statusText: 'Service Unavailable' });
      }
      return fetch(input, init);
    };
    const m = await loadHubModel('tiny/gpt2', memoryCache(), fast({ fetch: fetchFn, weights: false }));
    expect(m.config).toEqual(fx.tinyConfig);
    expect(fail).toBe(0);
    fail = 5;
    await expect(loadHubModel('tiny/gpt2', memoryCache(), fast({ fetch: fetchFn, weights: false, retries: 1 }))).rejects.toThrow(/HTTP 503 Service Unavailable/);
  });

  it.each([
    ['disk', () => nodeCache(join(tmp, 'interrupted'))],
    ['OPFS', () => opfsCache(fakeOpfs().root, { partBytes: 300_000 })],
  ] as Array<[string, () => ModelCache]>)('gives up after the retries with a clear error, keeps the bytes (%s cache), and a later load resumes', async (_kind, make) => {
    const cache = make();
    const after = RESUME_MIN_BYTES + 4096;
    // Attempt 1 stores `after` bytes; attempts 2 and 3 resume but gain nothing: that is 3 failures
    // in a row, one more than `retries` allows. (Attempts that gain bytes reset the count.)
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 1, after, mode: 'stall' });
    server.interrupt({ repo: 'tiny/big', file: 'model.safetensors', times: 2, after: 0 });
    const p = loadHubModel('tiny/big', cache, fast({ retries: 2, stallTimeoutMs: 1000 }));
    await expect(p).rejects.toThrow(DownloadInterruptedError);
    await expect(p).rejects.toThrow(/model\.safetensors of tiny\/big at revision 'main'.*interrupted 3 times in a row \(last: the connection (broke|closed) after \d+ of \d+ bytes.*\)\. \d+ bytes of \d+ are kept in the cache; load the model again to resume/);
    const partial = (await cache.list()).find((e) => e.file === 'model.safetensors');
    expect(partial).toMatchObject({ complete: false, size: after });
    server.requests.length = 0;
    const m = await loadHubModel('tiny/big', cache, fast());
    expectSameBits(await loadCheckpoint(m.config, m.files), fx.bigParams);
    expect(weightGets().map((r) => r.range)).toEqual([`bytes=${partial!.size}-`]);
    expect((await cache.list()).find((e) => e.file === 'model.safetensors')).toMatchObject({ complete: true, size: size() });
  });

  it('an abort stops the download and keeps what arrived', async () => {
    const cache = memoryCache();
    const ctl = new AbortController();
    const p = loadHubModel('tiny/big', cache, fast({
      signal: ctl.signal,
      onProgress: (e) => {
        if (e.file === 'model.safetensors' && e.bytes > 0) ctl.abort(new Error('user stopped it'));
      },
    }));
    await expect(p).rejects.toThrow('user stopped it');
    const partial = (await cache.list()).find((e) => e.file === 'model.safetensors');
    expect(partial).toMatchObject({ complete: false });
  });
});
