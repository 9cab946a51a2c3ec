// "Continue on a cluster": a run the page saved (io/run-store.ts) as a .zip of the PyTorch project
// (io/torch-project/project.ts): train.py, the checkpoint naming its data inside the project, the
// training tokens of the run's split as data/train.bin (the held-out split as data/eval.bin), and
// a README with the run's torchrun commands. The split is made again from the saved corpus as a
// resume makes it, and checked against the checkpoint's token fingerprint before anything is zipped.
import TRAIN_PY from '../io/torch-project/train.py?raw';
import { splitCorpus } from '../io/corpus.ts';
import type { RunStore } from '../io/run-store.ts';
import { blobChunks } from '../io/run-store.ts';
import { tokensFingerprint } from '../io/run-checkpoint.ts';
import { Sha256 } from '../io/sha256.ts';
import { writeNanoGptTokens } from '../io/token-files.ts';
import {
  checkTrainerState, PROJECT_EVAL_DATA, PROJECT_TRAIN_DATA, projectReadme, projectTrainerState, TorchExportError,
} from '../io/torch-project/project.ts';
import type { ZipEntry } from '../io/zip.ts';
import { PAGE_STATE_NAME, readCorpusAssets, readPageState } from './autosave.ts';
import { NoRunStorageError, runFileStem, zipBlob } from './saved-runs.ts';

/** The zip entries of saved run `id`'s PyTorch project, under the folder `top`. */
export async function torchProjectEntries(store: RunStore, id: string, top: string): Promise<{ entries: ZipEntry[]; bytes: number }> {
  const r = await store.open(id);
  const ps = await readPageState(r.checkpoint.get(PAGE_STATE_NAME));
  const stateBlob = r.checkpoint.get('trainer_state.json');
  const configBlob = r.checkpoint.get('config.json');
  if (!ps || !stateBlob || !configBlob) throw new TorchExportError('This saved run lacks its trainer state, config or page state, so it cannot be exported; delete it.');
  const stateJson = JSON.parse(await stateBlob.text()) as Record<string, unknown>;
  const state = checkTrainerState(stateJson, 'trainer_state.json of the saved run');
  const vocab = (JSON.parse(await configBlob.text()) as { vocab_size: number }).vocab_size;
  const tokenized = await readCorpusAssets(r.assets.corpus, ps.corpus.stats, vocab);
  const s = ps.settings;
  const split = splitCorpus(tokenized, { valFraction: s.valFraction, seed: s.seed, contextLength: s.seq });
  if (tokensFingerprint(split.train, new Sha256()) !== state.fingerprints.train_tokens) {
    throw new TorchExportError('The saved corpus does not give the training tokens the checkpoint was trained on (their fingerprints differ); the save is damaged.');
  }
  const hasEval = split.valWindows > 0;
  const modified = new Date(r.manifest.saved);
  const entries: ZipEntry[] = [];
  let bytes = 0;
  const add = (name: string, data: Uint8Array) => {
    entries.push({ name: `${top}/${name}`, data, size: data.length, modified });
    bytes += data.length;
  };
  for (const [name, blob] of r.checkpoint) {
    if (name === 'trainer_state.json' || name === PAGE_STATE_NAME) continue; // the page's own state stays in the page
    entries.push({ name: `${top}/checkpoint/${name}`, size: blob.size, modified, data: () => blobChunks(blob) });
    bytes += blob.size;
  }
  const enc = new TextEncoder();
  add('checkpoint/trainer_state.json', enc.encode(JSON.stringify(projectTrainerState(stateJson, hasEval), null, 2) + '\n'));
  add(PROJECT_TRAIN_DATA, writeNanoGptTokens(split.train));
  if (hasEval) add(PROJECT_EVAL_DATA, writeNanoGptTokens(split.val));
  add('train.py', enc.encode(TRAIN_PY));
  add('README.md', enc.encode(projectReadme(state, ps.model.name)));
  return { entries, bytes };
}

/** Saved run `id` as the PyTorch project's .zip. */
export async function torchProjectZip(store: RunStore, id: string): Promise<{ fileName: string; blob: Blob }> {
  const r = (await store.list()).find((x) => x.id === id);
  if (!r) throw new NoRunStorageError(`There is no saved run ${id} any more (it may have been deleted in another tab).`);
  const stem = `${runFileStem(r.summary.model, r.summary.step)}-torch`;
  const { entries, bytes } = await torchProjectEntries(store, id, stem);
  return zipBlob(`${stem}.zip`, entries, bytes);
}
