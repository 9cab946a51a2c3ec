// Models from the Hugging Face Hub (or a mirror, or a local server in the same URL layout):
// resolving `{endpoint}/{repo}/resolve/{revision}/{file}`, downloading files into a ModelCache
// with progress, retries and resume, and finding a GPT-2 model's files the way transformers'
// from_pretrained does (model.safetensors, else model.safetensors.index.json and its shards;
// tokenizer files when the repository has them). Runs in the page's worker and in Node.
//
// Hub facts relied on (huggingface_hub's file_download.py and the Hub's HTTP API):
//   - a file's URL is {endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)};
//   - large (LFS) files answer with a redirect to a CDN; renamed repositories with a relative
//     redirect; fetch follows both;
//   - a missing file is 404 with `X-Error-Code: EntryNotFound`, a missing revision 404 with
//     `RevisionNotFound`; a missing (or private) repository is 401 with `RepoNotFound`; a gated
//     one 403 `GatedRepo`;
//   - Range requests are honoured (206 with Content-Range), which is how a download resumes.
import { StudioError } from '../engine/errors.ts';
import { parseConfig, type GPT2Config } from '../engine/model/config.ts';
import type { ByteSource } from './bytes.ts';
import type { CacheWriter, HubFileKey, HubRepoKey, ModelCache } from './cache.ts';
import {
  filesFromSources,
  MissingModelFileError,
  SAFE_WEIGHTS_INDEX_NAME,
  SAFE_WEIGHTS_NAME,
  UnsupportedCheckpointFormatError,
  type ModelFiles,
} from './checkpoint.ts';
import { CorruptCheckpointError } from './safetensors.ts';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

/** A repository id the Hub could not hold (not `owner/name`, bad characters …). */
export class InvalidHubIdError extends StudioError {}

/** The server says a file, revision or repository is not there (404). */
export class HubNotFoundError extends StudioError {
  readonly url: string;
  readonly status: number;
  /** the Hub's X-Error-Code: 'EntryNotFound', 'RevisionNotFound', 'RepoNotFound', or '' */
  readonly code: string;
  constructor(message: string, url: string, status: number, code: string) {
    super(message);
    this.url = url;
    this.status = status;
    this.code = code;
  }
}

/** The repository needs authorisation (private, gated) or does not exist (401/403). */
export class HubAccessError extends StudioError {}

/** Another HTTP failure that retries did not cure (5xx, 429, an unexpected status). */
export class HubHttpError extends StudioError {}

/** The endpoint could not be reached (offline, DNS, TLS, CORS) after retries. */
export class HubNetworkError extends StudioError {}

/** The connection kept dropping before the whole file arrived; what arrived is kept for a resume. */
export class DownloadInterruptedError extends StudioError {}

export interface HubModelRef {
  /** 'owner/name' */
  repo: string;
  /** branch, tag or commit; 'main' by default */
  revision: string;
}

export interface HubPreset {
  id: string;
  label: string;
  /** shapes, so the page can show parameters and memory before downloading anything */
  config: Pick<GPT2Config, 'vocabSize' | 'nPositions' | 'nEmbd' | 'nLayer' | 'nHead'>;
}

/** The models offered by name; any other Hub id can be typed in. Shapes from their config.json. */
export const HUB_PRESETS: readonly HubPreset[] = [
  { id: 'openai-community/gpt2', label: 'GPT-2 (124M)', config: { vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer: 12, nHead: 12 } },
  { id: 'distilbert/distilgpt2', label: 'DistilGPT-2 (82M)', config: { vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer: 6, nHead: 12 } },
  { id: 'openai-community/gpt2-medium', label: 'GPT-2 Medium (355M)', config: { vocabSize: 50257, nPositions: 1024, nEmbd: 1024, nLayer: 24, nHead: 16 } },
];

// huggingface_hub's validate_repo_id: letters, digits, '-', '_', '.'; no '--' or '..'; at most
// 96 characters; an owner is optional on the Hub (legacy ids), but required here so that an id
// cannot be mistaken for a folder name.
const ID_PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

/** Parses `owner/name` or `owner/name@revision`. */
export function parseHubId(text: string): HubModelRef {
  const t = text.trim();
  const at = t.indexOf('@');
  const repo = at < 0 ? t : t.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : t.slice(at + 1);
  const parts = repo.split('/');
  const why =
    parts.length !== 2 ? 'it must be owner/name (for example openai-community/gpt2)'
      : !parts.every((p) => ID_PART.test(p)) ? 'owner and name use letters, digits, "-", "_" and "." only'
        : repo.includes('--') || repo.includes('..') ? '"--" and ".." are not allowed'
          : repo.length > 96 ? 'it is longer than 96 characters'
            : revision === '' ? 'the revision after "@" is empty'
              : /[\s\\]|\.\./.test(revision) || revision.startsWith('/') || revision.endsWith('/') ? `revision '${revision}' is not a branch, tag or commit name`
                : '';
  if (why) throw new InvalidHubIdError(`'${text}' is not a Hugging Face model id: ${why}. Write owner/name or owner/name@revision.`);
  return { repo, revision };
}

/** True when `text` parses as `owner/name[@revision]`. */
export function looksLikeHubId(text: string): boolean {
  try {
    parseHubId(text);
    return true;
  } catch {
    return false;
  }
}

/** The endpoint as a base URL without a trailing slash; http(s) only. */
export function normalizeEndpoint(endpoint: string = DEFAULT_ENDPOINT): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new InvalidHubIdError(`Hub endpoint '${endpoint}' is not a URL. Give one like ${DEFAULT_ENDPOINT} or http://127.0.0.1:8080.`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new InvalidHubIdError(`Hub endpoint '${endpoint}' must be an http:// or https:// URL.`);
  }
  return u.href.replace(/\/+$/, '');
}

/** The resolve URL of a file: `{endpoint}/{repo}/resolve/{revision}/{file}`. */
export function hubFileUrl(endpoint: string, repo: string, revision: string, file: string): string {
  // As huggingface_hub's hf_hub_url: the revision is quoted whole ('refs/pr/1' → 'refs%2Fpr%2F1'),
  // the file path segment by segment.
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${normalizeEndpoint(endpoint)}/${repo}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** Whether a Hub endpoint answers for a repository, and a sentence saying so. */
export interface HubReachability {
  endpoint: string;
  reachable: boolean;
  detail: string;
}

/**
 * Asks `endpoint` for `repo`'s config.json with a HEAD request (no download, no token): the page
 * calls it only when the user chooses the Hub, so nothing leaves the origin before that.
 */
export async function checkHub(endpoint: string, repo: string, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<HubReachability> {
  const fetchFn = opts.fetch ?? globalThis.fetch;
  let url: string;
  try {
    url = hubFileUrl(endpoint, repo, DEFAULT_REVISION, 'config.json');
  } catch (e) {
    return { endpoint, reachable: false, detail: e instanceof Error ? e.message : String(e) };
  }
  try {
    const res = await fetchFn(url, { method: 'HEAD', signal: AbortSignal.timeout(opts.timeoutMs ?? 5000) });
    return { endpoint, reachable: res.ok, detail: res.ok ? `${endpoint} is reachable` : `${url} answered HTTP ${res.status}` };
  } catch (e) {
    return { endpoint, reachable: false, detail: `${endpoint} is not reachable (${e instanceof Error ? e.message : String(e)})` };
  }
}

export interface DownloadProgress {
  repo: string;
  revision: string;
  file: string;
  /** bytes of the file stored so far (a resume starts at what was kept) */
  bytes: number;
  /** the file's size, when the server said; else null */
  total: number | null;
  /** bytes per second over the last few seconds */
  rate: number;
  /** seconds left at that rate, when the size is known and the rate positive; else null */
  eta: number | null;
  /** 1 for the first request of this file, more after retries */
  attempt: number;
  /** the file came from the cache, with no request */
  cached: boolean;
  /** the last event of this file */
  done: boolean;
}

export interface HubOptions {
  /** default https://huggingface.co */
  endpoint?: string;
  /** the fetch to use (tests, a proxy); default globalThis.fetch */
  fetch?: typeof fetch;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** consecutive failed attempts (no bytes gained) allowed per file before giving up; default 3 */
  retries?: number;
  /** first retry delay in ms, doubled each time; default 1000 */
  retryDelayMs?: number;
  /** a connection silent this long (ms) is dropped and retried; default 30000 */
  stallTimeoutMs?: number;
  /** least time between progress events of one file, in ms; default 100 (first and last always sent) */
  progressIntervalMs?: number;
  /** an access token for private or gated repositories (sent as a Bearer token) */
  token?: string;
}

/** A download is resumed with a Range request only past this many bytes; a smaller start restarts. */
export const RESUME_MIN_BYTES = 1 << 20;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Bytes per second over a sliding window of recent samples. */
class RateMeter {
  private readonly samples: Array<[number, number]> = [];
  constructor(private readonly windowMs = 3000) {}
  add(t: number, bytes: number): number {
    this.samples.push([t, bytes]);
    while (this.samples.length > 2 && t - this.samples[1][0] >= this.windowMs) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return t > t0 ? ((bytes - b0) * 1000) / (t - t0) : 0;
  }
}

function describeKey(k: HubFileKey): string {
  return `${k.file} of ${k.repo} at revision '${k.revision}'`;
}

/** A human message for a non-OK status, as a named error. */
function statusError(res: Response, key: HubFileKey, url: string): StudioError {
  const code = res.headers.get('x-error-code') ?? '';
  const where = `${key.repo} on ${key.endpoint}`;
  if (res.status === 401 || code === 'RepoNotFound') {
    return new HubAccessError(
      `Repository ${key.repo} was not found on ${key.endpoint} (HTTP ${res.status}). Check the id (owner/name, e.g. openai-community/gpt2); a private repository also needs an access token.`,
    );
  }
  if (res.status === 403) {
    return new HubAccessError(
      code === 'GatedRepo'
        ? `${key.repo} is gated (HTTP 403): accept its conditions on the Hub with your account, then use an access token.`
        : `Access to ${where} was refused (HTTP 403). Check that the repository is public, or use an access token that can read it.`,
    );
  }
  if (res.status === 404) {
    if (code === 'RevisionNotFound') {
      return new HubNotFoundError(`Revision '${key.revision}' does not exist in ${where} (HTTP 404, ${url}). Use a branch, tag or commit of the repository; the default is 'main'.`, url, 404, code);
    }
    return new HubNotFoundError(`${key.file} was not found in ${key.repo} at revision '${key.revision}' (HTTP 404, ${url}).`, url, 404, code);
  }
  return new HubHttpError(`Downloading ${describeKey(key)} failed: HTTP ${res.status} ${res.statusText} from ${url}.`);
}

const RETRY_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

interface Attempt {
  headers: Headers;
}

/**
 * Downloads `key` into `writer` (resuming after `writer.written` bytes when that is worth it),
 * retrying failures that are not the server's final word. Returns the headers of the response
 * that completed the file.
 */
async function fetchInto(key: HubFileKey, writer: CacheWriter, opts: HubOptions, count: () => void): Promise<Attempt> {
  const url = hubFileUrl(key.endpoint, key.repo, key.revision, key.file);
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const retries = opts.retries ?? 3;
  const delay = opts.retryDelayMs ?? 1000;
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  const interval = opts.progressIntervalMs ?? 100;
  const signal = opts.signal;
  const meter = new RateMeter();
  let attempt = 0;
  let failures = 0;
  let rangeRefused = false;
  let lastSent = -Infinity;
  let total: number | null = null;
  let lastError = '';

  const report = (done: boolean) => {
    const now = performance.now();
    if (!done && now - lastSent < interval) return;
    lastSent = now;
    const bytes = writer.written;
    const rate = meter.add(now, bytes);
    const t = total !== null && bytes <= total ? total : null;
    opts.onProgress?.({
      repo: key.repo, revision: key.revision, file: key.file, bytes, total: t, rate,
      eta: t !== null && rate > 0 ? (t - bytes) / rate : done ? 0 : null, attempt, cached: false, done,
    });
  };
  const fail = async (why: string, retryAfterMs?: number) => {
    lastError = why;
    failures++;
    if (failures > retries) return false;
    await sleep(retryAfterMs ?? delay * 2 ** (failures - 1), signal);
    return true;
  };

  for (;;) {
    signal?.throwIfAborted();
    attempt++;
    const start = writer.written;
    const resume = start >= RESUME_MIN_BYTES && !rangeRefused;
    if (start > 0 && !resume) await writer.reset();
    const headers: Record<string, string> = {};
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    if (resume) headers.Range = `bytes=${start}-`;
    // One controller per attempt: the caller's abort, or a stalled connection, ends it.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        // The reason is never shown: `stalled` tells the retry code what happened. A TimeoutError
        // (not a StudioError, which the read loop passes through as a cache failure).
        ctl.abort(new DOMException('stalled', 'TimeoutError'));
      }, stallMs);
    };
    try {
      arm();
      let res: Response;
      try {
        count();
        res = await fetchFn(url, { headers, signal: ctl.signal, redirect: 'follow' });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        const why = stalled ? `no answer within ${stallMs / 1000} s` : `${(e as Error).message}${(e as { cause?: Error }).cause ? ` (${(e as { cause?: Error }).cause!.message})` : ''}`;
        if (await fail(why)) continue;
        throw new HubNetworkError(
          `Could not reach ${key.endpoint} to download ${describeKey(key)}: ${why}. Check the connection, or set another endpoint (a mirror or a local server).`,
        );
      }
      if (res.status === 416 && resume) {
        // Range past the end: the kept bytes may already be the whole file.
        const size = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '')?.[1];
        await res.body?.cancel().catch(() => {});
        if (size !== undefined && Number(size) === start) {
          total = start;
          report(true);
          return { headers: res.headers };
        }
        rangeRefused = true;
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        if (RETRY_STATUS.has(res.status)) {
          const ra = Number(res.headers.get('retry-after'));
          if (await fail(`HTTP ${res.status}`, Number.isFinite(ra) && ra > 0 ? Math.min(ra, 30) * 1000 : undefined)) continue;
        }
        throw statusError(res, key, url);
      }
      const length = res.headers.get('content-length');
      const bodyBytes = length !== null && /^\d+$/.test(length) ? Number(length) : null;
      if (res.status === 206) {
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) !== start) {
          // Not the range asked for: start over without one.
          await res.body?.cancel().catch(() => {});
          rangeRefused = true;
          continue;
        }
        total = m[3] === '*' ? (bodyBytes === null ? null : start + bodyBytes) : Number(m[3]);
      } else {
        if (writer.written > 0) await writer.reset(); // the server sent the whole file
        total = bodyBytes;
      }
      if (!res.body) throw new HubHttpError(`${url} answered HTTP ${res.status} with no body.`);
      const before = writer.written;
      report(false);
      const reader = res.body.getReader();
      let broke = '';
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          arm();
          await writer.write(value);
          report(false);
        }
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof StudioError) throw e; // the cache failed (disk full …)
        const why = stalled ? `no data for ${stallMs / 1000} s` : `${(e as Error).message}${(e as { cause?: Error }).cause ? `: ${(e as { cause?: Error }).cause!.message}` : ''}`;
        broke = `the connection broke after ${writer.written}${total !== null ? ` of ${total}` : ''} bytes (${why})`;
        await reader.cancel().catch(() => {});
      }
      // HTTP framing never delivers more than Content-Length, so a body longer than it was
      // decoded from a content coding (gzip) and is whole; a shorter one was cut off.
      if (!broke && total !== null && writer.written < total) broke = `the connection closed after ${writer.written} of ${total} bytes`;
      if (!broke) {
        if (total !== null && writer.written > total) total = null;
        report(true);
        return { headers: res.headers };
      }
      if (writer.written > before) failures = 0; // progress was made: keep going
      if (await fail(broke)) continue;
      throw new DownloadInterruptedError(
        `The download of ${describeKey(key)} from ${key.endpoint} was interrupted ${failures} time${failures === 1 ? '' : 's'} in a row (last: ${lastError}). ` +
          `${writer.written} bytes${total !== null ? ` of ${total}` : ''} are kept in the cache; load the model again to resume.`,
      );
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

/** Counts requests, for `HubModel.requests`. */
interface Session {
  opts: HubOptions;
  endpoint: string;
  requests: number;
}

async function cachedOrDownload(key: HubFileKey, cache: ModelCache, s: Session): Promise<ByteSource> {
  const hit = await cache.get(key);
  if (hit) {
    s.opts.onProgress?.({ repo: key.repo, revision: key.revision, file: key.file, bytes: hit.size, total: hit.size, rate: 0, eta: 0, attempt: 0,
      cached: true, done: true });
    return hit;
  }
  const writer = await cache.open(key);
  try {
    await fetchInto(key, writer, s.opts, () => s.requests++);
  } catch (e) {
    // The server's final word: nothing worth keeping. Anything else: keep the bytes for a resume.
    if (e instanceof HubNotFoundError || e instanceof HubAccessError || e instanceof HubHttpError) await writer.discard();
    else await writer.suspend();
    throw e;
  }
  return writer.commit();
}

/**
 * One file of a repository, from the cache or downloaded into it (resuming a partial download).
 * Throws HubNotFoundError for a file the repository does not have.
 */
export async function downloadHubFile(ref: HubModelRef & { file: string }, cache: ModelCache, opts: HubOptions = {}): Promise<ByteSource> {
  const endpoint = normalizeEndpoint(opts.endpoint);
  return cachedOrDownload({ endpoint, repo: ref.repo, revision: ref.revision, file: ref.file }, cache, { opts, endpoint, requests: 0 });
}

/** Whether the repository has `file` (a HEAD request, following redirects; nothing is downloaded). */
async function exists(key: HubFileKey, s: Session): Promise<boolean> {
  const url = hubFileUrl(key.endpoint, key.repo, key.revision, key.file);
  const headers: Record<string, string> = {};
  if (s.opts.token) headers.Authorization = `Bearer ${s.opts.token}`;
  s.requests++;
  let res: Response;
  try {
    res = await (s.opts.fetch ?? globalThis.fetch)(url, { method: 'HEAD', headers, signal: s.opts.signal, redirect: 'follow' });
  } catch {
    return false; // only used to word an error better: a failure here must not hide that error
  }
  return res.ok;
}

export interface HubModel {
  ref: HubModelRef;
  endpoint: string;
  config: GPT2Config;
  /** every file loaded, by its name in the repository: for loadCheckpoint */
  files: ModelFiles;
  /** tokenizer files the repository has (tokenizer.json …): for tokenizerFromModelFiles */
  tokenizerFiles: ByteSource[];
  /** generation_config.json, when the repository has one */
  generationConfig?: ByteSource;
  /** HTTP requests made; 0 when everything came from the cache */
  requests: number;
}

export interface HubModelOptions extends HubOptions {
  /** download the weights too (default true); false: config and tokenizer only (`prepare`) */
  weights?: boolean;
}

const MAX_JSON_BYTES = 64 * 1024 * 1024;

async function readJson(src: ByteSource, what: string): Promise<unknown> {
  if (src.size > MAX_JSON_BYTES) throw new CorruptCheckpointError(`${what} is ${src.size} bytes, far too large for a JSON file.`);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(0, src.size)));
  } catch (e) {
    throw new CorruptCheckpointError(`${what} is not valid UTF-8 JSON (${(e as Error).message}). Clear it from the cache and load the model again.`);
  }
}

/** Shard names of an index: relative paths in the repository, checked. */
function shardNames(index: unknown, what: string): string[] {
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new CorruptCheckpointError(`${what} has no "weight_map" object mapping tensor names to shard files.`);
  }
  const names = [...new Set(Object.values(wm as Record<string, unknown>))];
  for (const n of names) {
    if (typeof n !== 'string' || n === '' || n.startsWith('/') || n.split('/').includes('..') || n.includes('\\')) {
      throw new CorruptCheckpointError(`${what} names shard ${JSON.stringify(n)}, which is not a file path inside the repository.`);
    }
  }
  return (names as string[]).sort();
}

/**
 * Finds and downloads (or takes from the cache) a GPT-2 model's files: config.json (checked
 * first, so an unsupported model is refused before its weights are fetched), the tokenizer files
 * the repository has, generation_config.json, then model.safetensors or the sharded set.
 * A repository with only PyTorch pickle weights gets UnsupportedCheckpointFormatError saying how
 * to get safetensors. What was found is remembered in the cache, so a second load of the same
 * repo and revision makes no request at all.
 */
export async function loadHubModel(id: string | HubModelRef, cache: ModelCache, opts: HubModelOptions = {}): Promise<HubModel> {
  const ref = typeof id === 'string' ? parseHubId(id) : parseHubId(`${id.repo}@${id.revision}`);
  const endpoint = normalizeEndpoint(opts.endpoint);
  const s: Session = { opts, endpoint, requests: 0 };
  const repoKey: HubRepoKey = { endpoint, repo: ref.repo, revision: ref.revision };
  const known = (await cache.getManifest(repoKey)) ?? { files: [], absent: [] };
  const absent = new Set(known.absent);
  const got = new Map<string, ByteSource>();
  const key = (file: string): HubFileKey => ({ ...repoKey, file });

  const need = async (file: string): Promise<ByteSource> => {
    const src = await cachedOrDownload(key(file), cache, s);
    got.set(file, src);
    return src;
  };
  /** an optional file: undefined when the repository does not have it (remembered) */
  const maybe = async (file: string): Promise<ByteSource | undefined> => {
    if (absent.has(file)) return undefined;
    try {
      return await need(file);
    } catch (e) {
      if (e instanceof HubNotFoundError && e.code !== 'RevisionNotFound' && e.code !== 'RepoNotFound') {
        absent.add(file);
        return undefined;
      }
      throw e;
    }
  };
  const save = () => cache.putManifest(repoKey, {
    files: [...new Set([...known.files, ...got.keys()])].sort(),
    absent: [...absent].filter((f) => !got.has(f)).sort(),
  });

  let configSrc: ByteSource;
  try {
    configSrc = await need('config.json');
  } catch (e) {
    if (e instanceof HubNotFoundError && e.code !== 'RevisionNotFound') {
      throw new MissingModelFileError(`${ref.repo} at revision '${ref.revision}' has no config.json (${e.url}), so it is not a transformers model repository. Check the id.`);
    }
    throw e;
  }
  const config = parseConfig(await readJson(configSrc, `config.json of ${ref.repo}`));

  const tokenizerFiles: ByteSource[] = [];
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    const src = await maybe(f);
    if (src) tokenizerFiles.push(src);
  }
  if (!tokenizerFiles.some((t) => t.name === 'tokenizer.json')) {
    // Older GPT-2 repositories carry only the slow tokenizer's files.
    for (const f of ['vocab.json', 'merges.txt']) {
      const src = await maybe(f);
      if (src) tokenizerFiles.push(src);
    }
  }
  const generationConfig = await maybe('generation_config.json');

  if (opts.weights !== false) {
    const single = await maybe(SAFE_WEIGHTS_NAME);
    if (!single) {
      const index = await maybe(SAFE_WEIGHTS_INDEX_NAME);
      if (index) {
        for (const shard of shardNames(await readJson(index, `${SAFE_WEIGHTS_INDEX_NAME} of ${ref.repo}`), `${SAFE_WEIGHTS_INDEX_NAME} of ${ref.repo}`)) {
          try {
            await need(shard);
          } catch (e) {
            if (e instanceof HubNotFoundError) {
              throw new MissingModelFileError(`${SAFE_WEIGHTS_INDEX_NAME} of ${ref.repo}@${ref.revision} lists shard ${shard}, but the repository does not have it (${e.url}).`);
            }
            throw e;
          }
        }
      } else {
        if (await exists(key('pytorch_model.bin'), s)) {
          throw new UnsupportedCheckpointFormatError(
            `${ref.repo} at revision '${ref.revision}' has only PyTorch pickle weights (pytorch_model.bin), which are not read: unpickling can run arbitrary code and needs PyTorch. ` +
              'Look on the Hub for a safetensors version: an open "Adding `safetensors` variant" pull request made by the conversion bot can be loaded as ' +
              `${ref.repo}@refs/pr/N; or convert it with transformers: GPT2LMHeadModel.from_pretrained(id).save_pretrained(dir, safe_serialization=True), then load that folder.`,
          );
        }
        throw new MissingModelFileError(`${ref.repo} at revision '${ref.revision}' has neither ${SAFE_WEIGHTS_NAME} nor ${SAFE_WEIGHTS_INDEX_NAME}. Use a GPT-2 repository with safetensors weights.`);
      }
    }
  }
  await save();
  const sources = [...got.values()];
  return {
    ref,
    endpoint,
    config,
    files: filesFromSources(sources),
    tokenizerFiles,
    ...(generationConfig ? { generationConfig } : {}),
    requests: s.requests,
  };
}
