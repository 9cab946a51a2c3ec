// Samples: the prompt and sampling settings, samples generated every N steps listed with their
// step, and the base model next to the fine-tuned one on the same prompt and seed.
import { validateSample } from '../worker/settings.ts';
import { send } from './engine.ts';
import { CheckField, NumberField, TextField } from './fields.tsx';
import { rate } from './format.ts';
import { useStudio } from './store.ts';

export function SamplesPanel() {
  const sample = useStudio((s) => s.sample);
  const samples = useStudio((s) => s.samples);
  const info = useStudio((s) => s.model.info);
  const runState = useStudio((s) => s.run.state);
  const compareBase = useStudio((s) => s.compareBase);
  const generating = useStudio((s) => s.progress.generate !== undefined);
  const { setSample, setCompareBase } = useStudio.getState();
  const errors = validateSample(sample, { nPositions: info?.nPositions });
  const canGenerate = info !== null && !generating && Object.keys(errors).length === 0 && runState !== 'running' && runState !== 'starting' && runState !== 'stopping';

  return (
    <section className="panel" aria-labelledby="samples-title" data-testid="samples-panel">
      <h2 id="samples-title">Samples</h2>
      <TextField label="Prompt" value={sample.prompt} onChange={(prompt) => setSample({ prompt })} multiline testId="sample-prompt" />
      <div className="row5">
        <NumberField label="Temperature" value={sample.temperature} onChange={(temperature) => setSample({ temperature })} error={errors.temperature} />
        <NumberField label="Top-k" value={sample.topK} integer onChange={(topK) => setSample({ topK })} error={errors.topK} />
        <NumberField label="Top-p" value={sample.topP} onChange={(topP) => setSample({ topP })} error={errors.topP} />
        <NumberField label="New tokens" value={sample.maxNewTokens} integer onChange={(maxNewTokens) => setSample({ maxNewTokens })} error={errors.maxNewTokens} testId="sample-length" />
        <NumberField label="Seed" value={sample.seed} integer onChange={(seed) => setSample({ seed })} error={errors.seed} />
      </div>
      <div className="row wrap">
        <button type="button" onClick={() => send({ type: 'generate', sample: useStudio.getState().sample, compare: useStudio.getState().compareBase })} disabled={!canGenerate} data-testid="generate">
          {generating ? 'Generating…' : 'Generate now'}
        </button>
        <CheckField label="Show the base model next to it" checked={compareBase} onChange={setCompareBase} />
      </div>
      <p className="muted">During a run, samples use these settings every “Sample every” steps; pause to generate by hand.</p>
      <ol className="samples" aria-label="Generated samples, newest first" data-testid="samples">
        {samples.map((s) => (
          <li key={s.id} className="sample" data-testid="sample">
            <div className="sample-head">
              <span className="chip">step {s.step}</span>
              <span className="muted">seed {s.seed} · {rate(s.tokensPerSec, 'tokens')}</span>
            </div>
            <div className={s.base !== null ? 'pair' : ''}>
              <div>
                {s.base !== null && <h3 className="sub">Fine-tuned</h3>}
                <p className="text"><span className="prompt">{s.prompt}</span>{s.tuned}</p>
              </div>
              {s.base !== null && (
                <div>
                  <h3 className="sub">Base model</h3>
                  <p className="text base"><span className="prompt">{s.prompt}</span>{s.base}</p>
                </div>
              )}
            </div>
          </li>
        ))}
      </ol>
    </section>
  );
}
