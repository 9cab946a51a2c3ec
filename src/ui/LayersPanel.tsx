// Layers panel: GPT-2's depth groups as a stack (ln_f on top, the embeddings at the bottom), a
// freeze switch on each, quick actions, each group's learning rate under discriminative rates,
// the gradual-unfreezing plan, the trainable-parameter count and the engine's GPU memory
// estimate, updated as switches change. Changes made while a run is paused apply on resume.
import { useEffect, useMemo, useState } from 'react';
import { groupLrFactors, unfreezeSchedule } from '../engine/train/groups.ts';
import type { MemoryBreakdown } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { bytes, count, lr as fmtLr } from './format.ts';
import { useStudio } from './store.ts';

const MEMORY_PARTS: Array<{ key: keyof Omit<MemoryBreakdown, 'total'>; label: string }> = [
  { key: 'parameters', label: 'Parameters' },
  { key: 'gradients', label: 'Gradients' },
  { key: 'optimizer', label: 'AdamW moments' },
  { key: 'activations', label: 'Activations' },
  { key: 'scratch', label: 'Scratch (LM head, backward)' },
  { key: 'baseCopy', label: 'Base model for comparison' },
];

function MemoryBars({ m, testId }: { m: MemoryBreakdown; testId: string }) {
  return (
    <div className="membars" data-testid={testId}>
      <div className="stackbar" aria-hidden="true">
        {MEMORY_PARTS.map((p) => (
          <div key={p.key} className={`seg seg-${p.key}`} style={{ width: `${(m[p.key] / Math.max(1, m.total)) * 100}%` }} />
        ))}
      </div>
      <dl className="kv compact">
        {MEMORY_PARTS.filter((p) => m[p.key] > 0).map((p) => (
          <div key={p.key}>
            <dt><span className={`swatch seg-${p.key}`} aria-hidden="true" />{p.label}</dt>
            <dd>{bytes(m[p.key])}</dd>
          </div>
        ))}
        <div className="total"><dt>Total</dt><dd>{bytes(m.total)}</dd></div>
      </dl>
    </div>
  );
}

export function LayersPanel() {
  const info = useStudio((s) => s.model.info);
  const frozen = useStudio((s) => s.frozen);
  const train = useStudio((s) => s.train);
  const runState = useStudio((s) => s.run.state);
  const memory = useStudio((s) => s.memory);
  const adapter = useStudio((s) => s.adapter);
  const { toggleFrozen, setFrozen } = useStudio.getState();
  const [topK, setTopK] = useState(2);
  const active = runState === 'running' || runState === 'starting' || runState === 'stopping';
  const paused = runState === 'paused';

  // Ask the engine for its estimate whenever what it depends on changes (debounced a little).
  const key = JSON.stringify([info?.name, info?.params, frozen, train.batch, train.seq, train.gradAccum, train.unfreeze, train.lora]);
  useEffect(() => {
    if (!info) return;
    const t = setTimeout(() => {
      const s = useStudio.getState();
      send({ type: 'estimate', settings: s.train, frozen: s.frozen, id: s.nextEstimateId() });
    }, 120);
    return () => clearTimeout(t);
  }, [key, info]);

  const L = info?.nLayer ?? 0;
  const factors = useMemo(() => {
    if (!info || !(train.lrDecay >= 1)) return null;
    try {
      return groupLrFactors(L, train.lrDecay);
    } catch {
      return null;
    }
  }, [info, L, train.lrDecay]);
  const plan = useMemo(() => {
    if (!info || !train.unfreeze.enabled) return null;
    try {
      return unfreezeSchedule({ L, start: train.unfreeze.start, every: train.unfreeze.every, userFrozen: new Set(frozen) });
    } catch {
      return null;
    }
  }, [info, L, train.unfreeze, frozen]);

  if (!info) {
    return (
      <section className="panel" aria-labelledby="layers-title">
        <h2 id="layers-title">Layers</h2>
        <p className="muted">Load a model to choose which of its layers train.</p>
      </section>
    );
  }
  const groups = [...info.groups].reverse(); // top first, as the model is drawn
  const trainable = info.groups.filter((g) => !frozen.includes(g.index)).reduce((a, g) => a + g.params, 0);
  const showRates = factors !== null && train.lrDecay !== 1;
  const total = L + 2;
  const gpuLimit = adapter.status === 'ready' ? adapter.report.limits.maxBufferSize : null;

  return (
    <section className="panel" aria-labelledby="layers-title" data-testid="layers-panel">
      <h2 id="layers-title">Layers</h2>
      <div className="row wrap quick" role="group" aria-label="Quick actions">
        <label className="inline">
          Train only the top
          <input type="number" min={1} max={total} value={topK} aria-label="Number of top groups to train" onChange={(e) => setTopK(Math.max(1, Math.min(total, Number(e.target.value) || 1)))} />
        </label>
        <button type="button" disabled={active} onClick={() => setFrozen(info.groups.filter((g) => g.index < total - topK).map((g) => g.index))} data-testid="train-top-k">Apply</button>
        <button type="button" disabled={active} onClick={() => setFrozen([])} data-testid="unfreeze-all">Unfreeze all</button>
        <button type="button" disabled={active} onClick={() => setFrozen([0])}>Freeze embeddings</button>
      </div>
      <ol className="stack-model" aria-label="Model layers, top first">
        {groups.map((g) => {
          const isFrozen = frozen.includes(g.index);
          const opens = plan?.openAt[g.index];
          return (
            <li key={g.index} className={`layer${isFrozen ? ' frozen' : ''}`} data-testid={`layer-${g.index}`}>
              <div className="layer-name">
                <span className="layer-label">{g.label === 'ln_f' ? 'Final layer norm (ln_f)' : g.label === 'embeddings' ? 'Embeddings (wte, wpe)' : `Block ${g.index - 1}`}</span>
                <span className="layer-params">{count(g.params)} params</span>
              </div>
              <div className="layer-meta">
                {showRates && !isFrozen && <span className="chip" title="learning rate of this group">lr {fmtLr(train.lr * factors[g.index])}</span>}
                {plan && !isFrozen && <span className="chip">{opens === 0 ? 'trains from the start' : `opens at step ${opens}`}</span>}
              </div>
              <button
                type="button"
                role="switch"
                aria-checked={!isFrozen}
                aria-label={`Train ${g.label}`}
                className={`switch${isFrozen ? '' : ' on'}`}
                disabled={active}
                onClick={() => toggleFrozen(g.index)}
                data-testid={`freeze-${g.index}`}
              >
                <span className="knob" aria-hidden="true" />
                <span className="switch-text">{isFrozen ? 'Frozen' : 'Trains'}</span>
              </button>
            </li>
          );
        })}
      </ol>
      {paused && <p className="notice" role="status">Paused: layer changes apply when you resume.</p>}
      {active && <p className="muted">Pause the run to change which layers train.</p>}
      <p className="trainable" data-testid="trainable-count">
        <strong>
          {count(memory.estimate && memory.estimateTrainable !== trainable && train.unfreeze.enabled ? memory.estimateTrainable : trainable)}
        </strong> of {count(info.params)} parameters train
        {' '}({((trainable / info.params) * 100).toFixed(1)}%)
      </p>
      {memory.estimate && (
        <>
          <h3 className="sub">GPU memory (estimate before the run)</h3>
          <MemoryBars m={memory.estimate} testId="memory-estimate" />
          {gpuLimit !== null && memory.estimate.total > gpuLimit * 4 && <p className="field-error">This is far above what this adapter is likely to hold; freeze more layers, lower the batch or the sequence length.</p>}
        </>
      )}
      {memory.actual && (
        <details className="more">
          <summary>Allocated by the running trainer: {bytes(memory.actual.total)}</summary>
          <MemoryBars m={memory.actual} testId="memory-actual" />
        </details>
      )}
    </section>
  );
}
