// The CLI's --model argument: a local model folder, or a Hugging Face Hub id
// (`owner/name[@revision]`) that is not an existing folder, downloaded into the Node cache
// ($STUDIO_CACHE, else ~/.cache/webgpu-studio) whose revision folder is then the model folder.
// As huggingface_hub does, HF_ENDPOINT sets another endpoint (a mirror, a local server) and
// HF_TOKEN an access token; --endpoint overrides HF_ENDPOINT.
import { stat } from 'node:fs/promises';
import { MissingModelFileError } from '../io/checkpoint.ts';
import { DEFAULT_ENDPOINT, loadHubModel, looksLikeHubId, parseHubId, type DownloadProgress, type HubOptions } from '../io/hub.ts';
import { nodeCache } from '../io/node-cache.ts';

export interface ModelArgOptions {
  /** --endpoint; default $HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** cache folder; default $STUDIO_CACHE or ~/.cache/webgpu-studio */
  cacheDir?: string;
  /** download the weights (train) or only config and tokenizer (prepare) */
  weights: boolean;
  /** progress lines */
  log: (line: string) => void;
  /** for tests: fetch, retry delays … */
  hub?: Omit<HubOptions, 'endpoint' | 'onProgress' | 'weights'>;
}

const MB = 1e6;

function progressLogger(log: (line: string) => void): (p: DownloadProgress) => void {
  const lastPct = new Map<string, number>();
  return (p) => {
    if (p.cached) return;
    if (p.done) {
      log(`downloaded ${p.file} (${(p.bytes / MB).toFixed(1)} MB)`);
      return;
    }
    if (p.total === null || p.total < 10 * MB) return;
    const pct = Math.floor((100 * p.bytes) / p.total / 10) * 10;
    if (pct <= (lastPct.get(p.file) ?? -1)) return;
    lastPct.set(p.file, pct);
    const eta = p.eta === null ? '' : `, ${Math.ceil(p.eta)} s left`;
    log(`${p.file}: ${pct}% of ${(p.total / MB).toFixed(0)} MB at ${(p.rate / MB).toFixed(1)} MB/s${eta}`);
  };
}

/** Whether the argument is meant as a path (so it is never taken for a Hub id). */
function pathLike(arg: string): boolean {
  return /^(\.{1,2}(\/|\\|$)|\/|~|[A-Za-z]:[\\/])/.test(arg) || arg.includes('\\');
}

/** Whether --model `arg` is taken as a Hub id: not an existing folder, not a path, and owner/name[@revision]. */
export async function isHubModelArg(arg: string): Promise<boolean> {
  const st = await stat(arg).catch(() => null);
  return !st && !pathLike(arg) && looksLikeHubId(arg);
}

/** The folder of the model `arg` names: itself when it is a folder, else the cache folder of a Hub id. */
export async function resolveModelDir(arg: string, opts: ModelArgOptions): Promise<string> {
  const st = await stat(arg).catch(() => null);
  if (st?.isDirectory()) return arg;
  if (st) throw new MissingModelFileError(`${arg} is a file, not a model folder. Give the folder that holds config.json, or a Hub id like openai-community/gpt2.`);
  if (pathLike(arg) || !looksLikeHubId(arg)) {
    throw new MissingModelFileError(
      `Model folder ${arg} does not exist${pathLike(arg) ? '' : ', and it is not a Hugging Face Hub id (owner/name or owner/name@revision)'}. Give a folder with config.json + model.safetensors, or a Hub id like openai-community/gpt2.`,
    );
  }
  const ref = parseHubId(arg);
  const endpoint = opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT;
  const cache = nodeCache(opts.cacheDir);
  const token = process.env.HF_TOKEN || undefined;
  const m = await loadHubModel(ref, cache, {
    ...(token ? { token } : {}),
    ...opts.hub,
    endpoint,
    weights: opts.weights,
    onProgress: progressLogger(opts.log),
  });
  const dir = cache.repoDir({ endpoint: m.endpoint, repo: ref.repo, revision: ref.revision });
  opts.log(`model ${ref.repo}@${ref.revision}: ${m.requests === 0 ? 'from the cache' : 'downloaded'}, in ${dir}`);
  return dir;
}
