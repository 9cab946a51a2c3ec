// Training on from a save: a run saved by the page (the run store, autosave.ts) or a checkpoint the
// user drops (kept as a saved run first, import-run.ts). Reading a save replaces the session's
// model and corpus with the ones the run trained: the model opened again from where it came from
// (its dropped files are in the save), the checkpoint's weights and LoRA weights uploaded over its
// fine-tuned copy, and the corpus from its saved token ids, checked against the checkpoint's
// fingerprint. The page gets its settings back, then the run continues through run.ts.
import { LoraWeights } from '../engine/model/lora.ts';
import { blobSource } from '../io/bytes.ts';
import { filesFromSources } from '../io/checkpoint.ts';
import { splitCorpus } from '../io/corpus.ts';
import type { LocalFile } from '../io/local-files.ts';
import { readRunCheckpoint, tokensFingerprint } from '../io/run-checkpoint.ts';
import { Sha256 } from '../io/sha256.ts';
import { readCorpusAssets, readModelAssets, readPageState, SavedRunError } from './autosave.ts';
import { corpusInfo } from './corpus.ts';
import { expandDrop, findCheckpoint, importedRun } from './import-run.ts';
import { describeModel, openModelSource } from './model-source.ts';
import type { ModelSource } from './protocol.ts';
import { train, type GoBack } from './run.ts';
import { requireRunStore } from './saved-runs.ts';
import { SettingsError, StudioBusyError, type Session } from './session.ts';

/**
 * Opens a saved run and trains on from its checkpoint (see the `runResume` request), at the saved
 * learning rate × `lrScale`, or at `lr` when given (going back after a non-finite loss: the rate
 * of the run that diverged × the user's factor `lrScale`). Returns where the run asks to go back to.
 */
export async function resumeSavedRun(s: Session, id: string, lrScale: number, lr?: number): Promise<GoBack | null> {
  if (s.run) throw new StudioBusyError('A run is in progress. Stop it before resuming a saved one.');
  if (s.loading || s.task) throw new StudioBusyError(`Wait for the ${s.loading ?? s.task} to finish.`);
  if (!(lrScale > 0 && Number.isFinite(lrScale))) throw new SettingsError(`The learning-rate factor must be a number above 0, got ${lrScale}.`);
  const store = await requireRunStore(() => s.runStore());
  const saved = (await store.list()).find((r) => r.id === id);
  const r = await store.open(id);
  const ps = await readPageState(r.checkpoint.get('studio_state.json'));
  if (!ps) throw new SavedRunError('This saved run has no page state (studio_state.json): it was not saved by the page. Resume it with the command line (train --resume).');
  s.loading = 'saved run';
  let ck: Awaited<ReturnType<typeof readRunCheckpoint>>;
  try {
    s.post({ type: 'progress', task: 'model', label: 'Reading the saved run', done: 0, total: 1, unit: 'items' });
    ck = await readRunCheckpoint(filesFromSources([...r.checkpoint].map(([n, b]) => blobSource(b, n))));
    // The model as it was loaded (the original weights, for comparisons), then the corpus.
    const source: ModelSource = ps.model.source.kind === 'files' ? { kind: 'files', files: readModelAssets(r.assets.model, ps.model.source.paths) } : ps.model.source;
    const folder = await openModelSource(source, (label, done, total) => s.post({ type: 'progress', task: 'model', label: `Downloading ${label}`, done, total, unit: 'bytes' }));
    s.dropModel();
    const baseFingerprint = ck.state.fingerprints.base_weights;
    s.model = { folder, info: describeModel(folder, source.kind), source, gpu: null, trainedSteps: 0, lastRun: null, baseFingerprint };
    s.evaluator.forgetBase();
    const tokenized = await readCorpusAssets(r.assets.corpus, ps.corpus.stats, folder.config.vocabSize);
    const st = ps.settings;
    const split = splitCorpus(tokenized, { valFraction: st.valFraction, seed: st.seed, contextLength: st.seq });
    if (tokensFingerprint(split.train, new Sha256()) !== ck.state.fingerprints.train_tokens) {
      throw new SavedRunError('The saved corpus does not give the training tokens the checkpoint was trained on (their fingerprints differ); the save is damaged. Delete it, or resume the downloaded checkpoint with the command line and the original data.');
    }
    s.corpus = {
      source: { kind: 'files', files: [] }, options: ps.corpus.options, name: ps.corpus.name, names: ps.corpus.names, tokenized, tokenizer: folder.tokenizer,
      split, valFraction: st.valFraction, seed: st.seed, contextLength: st.seq, version: (s.corpus?.version ?? 0) + 1,
    };
    const gm = await s.gpuModel();
    for (const [name, t] of ck.params) gm.tuned.upload(name, t);
    if (ck.lora) gm.lora = { config: ck.lora.config, weights: new LoraWeights(gm.ctx, folder.config, ck.lora.config, ck.lora.params) };
    ck.params.clear();
  } finally {
    s.post({ type: 'progress', task: 'model', label: 'Reading the saved run', done: 1, total: 1, unit: 'items' });
    s.loading = null;
  }
  s.post({ type: 'modelLoaded', model: s.model.info });
  s.post({ type: 'corpusLoaded', corpus: corpusInfo(s.corpus) });
  const settings = { ...ps.settings, lr: lr ?? ps.settings.lr * lrScale };
  s.post({ type: 'restored', id, settings, frozen: ck.state.settings.frozen, sample: ps.sample });
  if (lrScale !== 1) s.post({ type: 'info', message: `Resuming at step ${ck.state.step} with the learning rate × ${lrScale} (${settings.lr.toPrecision(3)}).` });
  return await train(s, settings, new Set(ck.state.settings.frozen), ps.sample, {
    runId: id, optimizer: ck.optimizer, step: ck.state.step, events: ps.events, fingerprints: ck.state.fingerprints,
    kernels: ck.state.kernels, evalBefore: ps.evalBefore,
    savedAt: r.manifest.saved, bytes: saved?.bytes ?? 0,
  });
}

/** Keeps a dropped checkpoint as a saved run, then resumes it. */
export async function importDroppedRun(s: Session, files: LocalFile[]): Promise<GoBack | null> {
  if (s.run) throw new StudioBusyError('A run is in progress. Stop it before resuming a dropped checkpoint.');
  const store = await requireRunStore(() => s.runStore());
  const found = findCheckpoint(await expandDrop(files));
  const c = s.corpus;
  const run = await importedRun(found, c ? { name: c.name, names: c.names, options: c.options, tokenized: c.tokenized } : null);
  const id = store.newRunId();
  await store.save(id, run);
  await s.postRuns();
  return await resumeSavedRun(s, id, 1);
}
