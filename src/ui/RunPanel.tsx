// Run controls: start, pause, resume, stop; step and total, elapsed and remaining time, tokens/s.
// A run paused by a non-finite loss offers to go back to its last save with a lower learning
// rate (half by default, editable), or to stop. The engine runs in the worker, so the page stays
// responsive throughout.
import { useState } from 'react';
import { hasErrors, runSteps, validateSample, validateTrain } from '../worker/settings.ts';
import { send } from './engine.ts';
import { duration, rate } from './format.ts';
import { useStudio, type DivergedRun } from './store.ts';

const STATE_TEXT: Record<string, string> = {
  idle: 'Ready',
  starting: 'Starting…',
  running: 'Training',
  paused: 'Paused',
  stopping: 'Stopping…',
  finished: 'Finished',
  stopped: 'Stopped',
  failed: 'Failed',
};

export function RunPanel() {
  const run = useStudio((s) => s.run);
  const model = useStudio((s) => s.model);
  const corpus = useStudio((s) => s.corpus);
  const train = useStudio((s) => s.train);
  const sample = useStudio((s) => s.sample);
  const frozen = useStudio((s) => s.frozen);
  const adapter = useStudio((s) => s.adapter);
  const { started } = useStudio.getState();

  const info = model.info;
  const hasF16 = adapter.status === 'ready' ? adapter.report.features.includes('shader-f16') : undefined;
  const hasSubgroups = adapter.status === 'ready' ? adapter.report.features.includes('subgroups') : undefined;
  const errors = { ...validateTrain(train, { nPositions: info?.nPositions, nLayer: info?.nLayer, trainTokens: corpus.info?.trainTokens, hasF16, hasSubgroups }),
    ...validateSample(sample, { nPositions: info?.nPositions }) };
  const allFrozen = info !== null && !train.unfreeze.enabled && frozen.length === info.groups.length;
  const active = run.state === 'running' || run.state === 'paused' || run.state === 'starting' || run.state === 'stopping';
  const why = adapter.status === 'unavailable' ? 'WebGPU is not available.'
    : !info ? 'Load a model first.'
      : !corpus.info ? 'Load a corpus first.'
        : model.status === 'loading' || corpus.status === 'loading' ? 'Loading…'
          : allFrozen ? 'Every layer is frozen: unfreeze one in the Layers panel.'
            : hasErrors(errors) ? 'Fix the settings marked in red.'
              : '';
  const total = run.totalSteps || runSteps(train, corpus.info?.trainTokens);
  const frac = total > 0 ? Math.min(1, run.step / total) : 0;

  const start = () => {
    started('train');
    const s = useStudio.getState();
    send({ type: 'train', settings: s.train, frozen: s.frozen, sample: s.sample });
  };

  return (
    <section className="panel run" aria-labelledby="run-title" data-testid="run-panel">
      <div className="run-head">
        <h2 id="run-title">Run</h2>
        <span className={`state state-${run.state}`} data-testid="run-state" role="status" aria-live="polite">{STATE_TEXT[run.state]}</span>
      </div>
      <div className="row wrap">
        {!active && (
          <button type="button" className="primary big" onClick={start} disabled={why !== ''} data-testid="start" aria-describedby="start-why">
            {model.trainedSteps > 0 ? 'Train more' : 'Start training'}
          </button>
        )}
        {run.state === 'running' && <button type="button" className="big" onClick={() => send({ type: 'pause' })} data-testid="pause">Pause</button>}
        {run.state === 'paused' && !run.diverged && (
          <button type="button" className="primary big" onClick={() => send({ type: 'resume', frozen: useStudio.getState().frozen })} data-testid="resume">Resume</button>
        )}
        {(run.state === 'running' || (run.state === 'paused' && !run.diverged) || run.state === 'starting') && (
          <button type="button" className="danger big" onClick={() => send({ type: 'stop' })} data-testid="stop">Stop</button>
        )}
        {!active && model.trainedSteps > 0 && (
          <button type="button" onClick={() => send({ type: 'resetWeights' })} data-testid="reset-weights" title="Put the fine-tuned weights back to the loaded model">Reset weights</button>
        )}
      </div>
      {why && !active && <p id="start-why" className="muted">{why}</p>}
      {run.state === 'paused' && run.diverged && <DivergedChoice d={run.diverged} />}
      <div className="bar big" role="progressbar" aria-label="Training progress" aria-valuemin={0} aria-valuemax={total} aria-valuenow={run.step}>
        <div style={{ width: `${frac * 100}%` }} />
      </div>
      <dl className="stats" data-testid="run-stats">
        <div><dt>Step</dt><dd data-testid="run-step">{run.step} / {total || '—'}</dd></div>
        <div><dt>Elapsed</dt><dd>{run.elapsedMs > 0 ? duration(run.elapsedMs) : '—'}</dd></div>
        <div><dt>Time left</dt><dd data-testid="run-eta">{run.state === 'running' && run.step > 0 ? duration(run.etaMs) : '—'}</dd></div>
        <div><dt>Throughput</dt><dd data-testid="run-tps">{rate(run.tokensPerSec, 'tokens')}</dd></div>
        <div><dt>Last loss</dt><dd data-testid="run-loss">{run.series.length ? run.series[run.series.length - 1].loss.toFixed(4) : '—'}</dd></div>
      </dl>
      {run.message && <p className={run.state === 'failed' ? 'field-error' : 'muted'} data-testid="run-message">{run.message}</p>}
      {run.info.length > 0 && (
        <details className="more">
          <summary>Run log ({run.info.length})</summary>
          <pre className="log" data-testid="run-log">{run.info.join('\n')}</pre>
        </details>
      )}
    </section>
  );
}

/** The choice after a non-finite loss: back to the last save at the learning rate × a factor, or stop. */
function DivergedChoice({ d }: { d: DivergedRun }) {
  const [factor, setFactor] = useState('0.5');
  const f = Number(factor);
  const ok = factor.trim() !== '' && Number.isFinite(f) && f > 0;
  return (
    <div className="notice warn" role="alert" data-testid="diverged">
      <div>
        <strong>Paused at step {d.step}: the loss became non-finite.</strong>
        <p>{d.message}</p>
        {d.save ? (
          <>
            <p>
              The weights now are those after step {d.lastGood}; the run&apos;s last save, at step {d.save.step}, was not written over.
              Going back to it retrains from there with a lower learning rate.
            </p>
            <div className="row wrap">
              <label>
                Learning rate ×{' '}
                <input
                  type="number" min="0" step="0.1" value={factor} onChange={(e) => setFactor(e.target.value)}
                  aria-invalid={!ok} data-testid="diverged-factor" style={{ width: '6em' }}
                />
              </label>
              <span className="muted">= {ok ? (d.lr * f).toPrecision(3) : '—'}</span>
              <button type="button" className="primary" disabled={!ok} data-testid="diverged-back" onClick={() => send({ type: 'divergedBack', lrScale: f })}>
                Go back to step {d.save.step} with this learning rate
              </button>
              <button type="button" className="danger" data-testid="diverged-stop" onClick={() => send({ type: 'stop' })}>Stop</button>
            </div>
            {!ok && <p className="field-error">The factor must be a number above 0 (0.5 halves the learning rate).</p>}
          </>
        ) : (
          <>
            <p>
              No save of this run exists yet to go back to (saves are made every few minutes and at pause). Stop, lower the learning rate,
              press Reset weights and train again.
            </p>
            <button type="button" className="danger" data-testid="diverged-stop" onClick={() => send({ type: 'stop' })}>Stop</button>
          </>
        )}
      </div>
    </div>
  );
}
