// Evaluation on the validation split, before and after training: perplexity, next-token accuracy
// and BLEU. (Perplexity here scores all T targets of each window; Hugging Face's labels=input_ids
// scores T−1, so numbers differ slightly from a Trainer's on the same text.)
import type { EvalResult } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { formatLoss, formatPerplexity } from '../engine/eval/metrics.ts';
import { metric, percent } from './format.ts';
import { Progress } from './fields.tsx';
import { useStudio } from './store.ts';

const ROWS: Array<{ label: string; get(r: EvalResult): number | null; fmt(v: number | null): string; better: 'lower' | 'higher' }> = [
  { label: 'Loss', get: (r) => r.loss, fmt: (v) => formatLoss(v), better: 'lower' },
  { label: 'Perplexity', get: (r) => r.perplexity, fmt: (v) => formatPerplexity(v), better: 'lower' },
  { label: 'Next-token accuracy', get: (r) => r.accuracy, fmt: (v) => percent(v), better: 'higher' },
  { label: 'BLEU-4', get: (r) => r.bleu, fmt: (v) => (v === null ? '—' : v.toFixed(2)), better: 'higher' },
];

export function EvalPanel() {
  const ev = useStudio((s) => s.evaluation);
  const progress = useStudio((s) => s.progress.evaluate);
  const corpus = useStudio((s) => s.corpus.info);
  const info = useStudio((s) => s.model.info);
  const runState = useStudio((s) => s.run.state);
  const can = info !== null && corpus !== null && corpus.valWindows > 0 && !progress && runState !== 'running' && runState !== 'starting' && runState !== 'stopping';
  const any = ev.before !== null || ev.after !== null;

  return (
    <section className="panel" aria-labelledby="eval-title" data-testid="eval-panel">
      <h2 id="eval-title">Evaluation</h2>
      {corpus && corpus.valWindows === 0 && <p className="muted">The validation split is empty; raise the validation fraction in the Data panel and load the corpus again.</p>}
      {any ? (
        <table className="metrics" data-testid="eval-table">
          <thead>
            <tr><th scope="col">On the validation split</th><th scope="col">Before</th><th scope="col">After{ev.after ? ` (step ${ev.afterStep})` : ''}</th><th scope="col">Change</th></tr>
          </thead>
          <tbody>
            {ROWS.map((r) => {
              const b = ev.before ? r.get(ev.before) : null;
              const a = ev.after ? r.get(ev.after) : null;
              const d = a !== null && b !== null ? a - b : null;
              const good = d !== null && (r.better === 'lower' ? d < 0 : d > 0);
              return (
                <tr key={r.label}>
                  <th scope="row">{r.label}</th>
                  <td data-testid={`eval-before-${r.label}`}>{r.fmt(b)}</td>
                  <td data-testid={`eval-after-${r.label}`}>{r.fmt(a)}</td>
                  <td className={d === null || d === 0 ? '' : good ? 'good' : 'bad'}>
                    {d === null ? '—' : d === 0 ? 'same' : `${d > 0 ? '+' : '−'}${r.label === 'Next-token accuracy' ? percent(Math.abs(d)) : metric(Math.abs(d))}`}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : (
        <p className="muted">Training evaluates the model before it starts and after it ends; you can also evaluate now.</p>
      )}
      {(ev.before ?? ev.after) && (
        <p className="muted">
          Over all {(ev.after ?? ev.before)!.windows} validation windows ({(ev.after ?? ev.before)!.tokens.toLocaleString('en-US')} targets). BLEU-4 is nltk&apos;s corpus
          BLEU of greedy continuations of up to 20 validation prompts against the true text.
        </p>
      )}
      {progress && <Progress {...progress} testId="eval-progress" />}
      <button type="button" onClick={() => send({ type: 'evaluate', settings: useStudio.getState().train })} disabled={!can} data-testid="evaluate">Evaluate now</button>
    </section>
  );
}
