// Saved runs: every run the page saved in the browser (its latest checkpoint, with the corpus
// token ids and what the page needs to show it again), with its size; each can be downloaded as a
// .zip (a checkpoint folder the command line resumes from and transformers loads) or deleted.
// A checkpoint folder or .zip dropped here (saved by the page, or written by the command line)
// is kept as a saved run and resumed. Also the browser storage used and allowed, and whether it
// is persistent.
import { useEffect, useRef, useState, type DragEvent } from 'react';
import { describeError } from '../engine/errors.ts';
import { localFilesFromDrop, localFilesFromInput, type LocalFile } from '../io/local-files.ts';
import { send } from './engine.ts';
import { useStorageState } from './durability.ts';
import { bytes } from './format.ts';
import { useStudio } from './store.ts';

function when(ms: number): string {
  const d = new Date(ms);
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${d.toTimeString().slice(0, 5)}`;
}

export function SavedRunsPanel() {
  const saved = useStudio((s) => s.saved);
  const adapterReady = useStudio((s) => s.adapter.status === 'ready');
  const runState = useStudio((s) => s.run.state);
  const storage = useStorageState(`${saved.last?.at ?? 0}:${saved.runs.length}`);
  useEffect(() => {
    if (adapterReady) send({ type: 'runsList' });
  }, [adapterReady, saved.last?.at]);
  const training = runState === 'running' || runState === 'paused' || runState === 'starting' || runState === 'stopping';

  return (
    <section className="panel" aria-labelledby="saved-title" data-testid="saved-runs">
      <h2 id="saved-title">Saved runs</h2>
      {saved.available === false && <p className="muted">This browser gives the page no storage for runs (a private window?): a reload loses the run.</p>}
      {saved.last && (
        <p className="muted" data-testid="last-save">
          Saved at step {saved.last.step} ({new Date(saved.last.at).toTimeString().slice(0, 8)}, {bytes(saved.last.bytes)}, {saved.last.seconds.toFixed(1)} s).
        </p>
      )}
      {saved.runs.length === 0 ? (
        <p className="muted">No saved runs yet. A run is saved every few minutes, and when it pauses, stops or finishes.</p>
      ) : (
        <ul className="saved-runs">
          {saved.runs.map((r) => {
            const current = saved.last?.id === r.id && training;
            return (
              <li key={r.id} data-testid="saved-run">
                <span>
                  <strong>{r.model}</strong> on {r.corpus}: step {r.step} of {r.totalSteps} ({r.state === 'finished' ? 'finished' : r.state === 'lost' ? 'device lost' : r.state}, saved {when(r.saved)}) · {bytes(r.bytes)}
                </span>
                {r.state !== 'finished' && (
                  <button type="button" disabled={training} data-testid="saved-run-resume" onClick={() => send({ type: 'runResume', id: r.id })}>Resume</button>
                )}
                <button type="button" disabled={saved.downloading !== null} data-testid="saved-run-download"
                  onClick={() => {
                    useStudio.setState((s) => ({ saved: { ...s.saved, downloading: r.id } }));
                    send({ type: 'runDownload', id: r.id });
                  }}>
                  {saved.downloading === r.id ? 'Zipping…' : 'Download .zip'}
                </button>
                <button type="button" disabled={saved.downloading !== null} data-testid="saved-run-torch"
                  title="A .zip with train.py, this checkpoint and its training tokens: continue the run with PyTorch on one GPU or under torchrun on many (its README has the commands)."
                  onClick={() => {
                    useStudio.setState((s) => ({ saved: { ...s.saved, downloading: r.id } }));
                    send({ type: 'runTorchProject', id: r.id });
                  }}>
                  Continue on a cluster
                </button>
                <button type="button" disabled={current} title={current ? 'This run is training: stop it first.' : undefined} data-testid="saved-run-delete"
                  onClick={() => {
                    if (window.confirm(`Delete the saved run of ${r.model} on ${r.corpus} (step ${r.step}, ${bytes(r.bytes)})? This cannot be undone.`)) send({ type: 'runDelete', id: r.id });
                  }}>
                  Delete
                </button>
              </li>
            );
          })}
        </ul>
      )}
      <CheckpointDrop disabled={training} />
      {storage && (
        <p className="muted" data-testid="storage">
          Browser storage: {bytes(storage.usage)} used of {bytes(storage.quota)} allowed{storage.persisted ? ' (persistent: the browser will not evict it)' : ' (not persistent: the browser may evict it when the disk fills)'}.
        </p>
      )}
    </section>
  );
}

/**
 * On load: the runs a reload, a crash, a closed tab or a lost device interrupted, offered as one
 * sentence and one button each, until a run starts.
 */
export function ResumeOffers() {
  const runs = useStudio((s) => s.saved.runs);
  const idle = useStudio((s) => s.run.state === 'idle');
  const adapterReady = useStudio((s) => s.adapter.status === 'ready');
  const busy = useStudio((s) => s.model.status === 'loading');
  const interrupted = runs.filter((r) => r.state !== 'finished');
  if (!idle || !adapterReady || interrupted.length === 0) return null;
  return (
    <div className="notice info" role="status" data-testid="resume-offers">
      <div>
        {interrupted.slice(0, 3).map((r) => (
          <p key={r.id} data-testid="resume-offer">
            <button type="button" disabled={busy} onClick={() => send({ type: 'runResume', id: r.id })}>
              Resume {r.model} on {r.corpus} from step {r.step} of {r.totalSteps} (saved {new Date(r.saved).toTimeString().slice(0, 5)})
            </button>
          </p>
        ))}
      </div>
    </div>
  );
}

/** Drop (or choose) a checkpoint folder or .zip to resume it. */
function CheckpointDrop({ disabled }: { disabled: boolean }) {
  const [dragging, setDragging] = useState(false);
  const zipInput = useRef<HTMLInputElement>(null);
  const dirInput = useRef<HTMLInputElement>(null);
  const resume = (files: LocalFile[]) => {
    if (files.length && !disabled) send({ type: 'runImport', files });
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    localFilesFromDrop(e.dataTransfer).then(resume, (err: unknown) => {
      const { name, message } = describeError(err);
      useStudio.getState().pageError(name, message);
    });
  };
  return (
    <div className={`dropzone${dragging ? ' over' : ''}`} data-testid="checkpoint-drop"
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)} onDrop={onDrop}>
      <p>
        Resume a checkpoint: drop a <code>checkpoint-&lt;step&gt;</code> folder (or a folder of them) or a <code>.zip</code> saved by this page or
        written by the command line. A command-line checkpoint resumes on the corpus loaded in the Data panel, which must be the data it trained on.
      </p>
      <div className="row">
        <button type="button" disabled={disabled} onClick={() => zipInput.current?.click()}>Choose a .zip…</button>
        <button type="button" disabled={disabled} onClick={() => dirInput.current?.click()}>Choose a folder…</button>
      </div>
      <input ref={zipInput} type="file" accept=".zip,application/zip" hidden aria-label="Checkpoint .zip" data-testid="checkpoint-zip"
        onChange={(e) => resume(localFilesFromInput(e.target.files ?? []))} />
      <input ref={dirInput} type="file" hidden aria-label="Checkpoint folder" {...{ webkitdirectory: '' }}
        onChange={(e) => resume(localFilesFromInput(e.target.files ?? []))} />
    </div>
  );
}
