// Charts of the run (recharts): train and validation loss, perplexity, learning rate, gradient
// norm and tokens/s. Smoothing is TensorBoard's debiased exponential moving average; a log scale
// helps once the loss has fallen; hovering shows the values. With few points every point is
// drawn as a dot, so a short run is readable.
import { useMemo, useState } from 'react';
import { CartesianGrid, Line, LineChart, Tooltip, XAxis, YAxis } from 'recharts';
import { emaSmooth } from '../engine/eval/metrics.ts';
import { metric } from './format.ts';
import { useStudio, type EvalPoint, type StepPoint } from './store.ts';

/** At most `max` points, evenly spaced, always keeping the last. */
export function thin<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const out: T[] = [];
  const stride = points.length / max;
  for (let i = 0; i < max - 1; i++) out.push(points[Math.floor(i * stride)]);
  out.push(points[points.length - 1]);
  return out;
}

interface Row {
  step: number;
  [k: string]: number | null;
}

interface SeriesDef {
  key: string;
  label: string;
  color: string;
  /** drawn faint (the raw values behind a smoothed line) */
  faint?: boolean;
  /** only some steps have a value (validation): draw points joined across gaps */
  sparse?: boolean;
}

function Chart({ title, rows, series, log, format, testId, latest }: {
  title: string;
  rows: Row[];
  series: SeriesDef[];
  log: boolean;
  format: (v: number) => string;
  testId: string;
  latest: string;
}) {
  const n = rows.length;
  const dots = n <= 40;
  const positive = rows.every((r) => series.every((s) => r[s.key] === null || r[s.key] === undefined || (r[s.key] as number) > 0));
  const scale = log && positive ? 'log' : 'linear';
  // A flat series (one point, or a constant rate) would give recharts a zero-height domain and
  // repeated ticks: widen it around the value.
  const values = rows.flatMap((r) => series.map((sd) => r[sd.key])).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const flat = values.length > 0 && hi - lo <= Math.abs(hi) * 1e-9;
  const domain: [number | 'auto', number | 'auto'] = !flat ? ['auto', 'auto']
    : scale === 'log' ? [lo / 1.5, hi * 1.5]
      : [lo - (Math.abs(lo) * 0.1 || 1), hi + (Math.abs(hi) * 0.1 || 1)];
  return (
    <figure className="chart" data-testid={testId} data-points={n} aria-label={`${title}: ${n} points, latest ${latest}`}>
      <figcaption>
        <span>{title}</span>
        <span className="latest">{latest}</span>
      </figcaption>
      {n === 0 ? (
        <div className="chart-empty">No points yet</div>
      ) : (
        <LineChart responsive style={{ width: '100%', height: 170 }} data={rows} margin={{ top: 6, right: 10, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" className="grid" />
          <XAxis dataKey="step" type="number" domain={['dataMin', 'dataMax']} allowDecimals={false} tick={{ fontSize: 11 }} tickLine={false} />
          <YAxis scale={scale} domain={domain} width={54} tick={{ fontSize: 11 }}
            tickFormatter={(v: number) => format(v)} tickLine={false} allowDataOverflow={false} />
          <Tooltip
            formatter={(v, name) => [typeof v === 'number' ? format(v) : String(v), String(name)]}
            labelFormatter={(l) => `step ${String(l)}`}
            contentStyle={{ background: 'var(--panel)', border: '1px solid var(--line)', borderRadius: 8, color: 'var(--text)' }}
          />
          {series.map((s) => (
            <Line
              key={s.key}
              type="monotone"
              dataKey={s.key}
              name={s.label}
              stroke={s.color}
              strokeOpacity={s.faint ? 0.3 : 1}
              strokeWidth={s.faint ? 1 : 2}
              dot={s.sparse || (dots && !s.faint) ? { r: 3 } : false}
              activeDot={{ r: 4 }}
              connectNulls
              isAnimationActive={false}
            />
          ))}
        </LineChart>
      )}
    </figure>
  );
}

function merge(series: StepPoint[], evals: EvalPoint[], smoothing: number, maxPoints: number) {
  // TensorBoard's debiased EMA, the engine's one implementation (engine/eval/metrics.ts).
  const loss = emaSmooth(series.map((p) => p.loss), smoothing);
  const norm = emaSmooth(series.map((p) => p.gradNorm), smoothing);
  const tps = emaSmooth(series.map((p) => p.tokensPerSec), smoothing);
  const byStep = new Map<number, Row>();
  thin(series.map((p, i) => ({ p, i })), maxPoints).forEach(({ p, i }) => {
    byStep.set(p.step, {
      step: p.step, loss: p.loss, lossSmooth: loss[i], ppl: Math.exp(loss[i]), lr: p.lr, gradNorm: p.gradNorm, gradNormSmooth: norm[i], tps: tps[i],
      valLoss: null, valPpl: null,
    });
  });
  for (const e of evals) {
    const row = byStep.get(e.step) ?? { step: e.step, loss: null, lossSmooth: null, ppl: null, lr: null, gradNorm: null, gradNormSmooth: null, tps: null };
    row.valLoss = e.loss;
    row.valPpl = e.perplexity;
    byStep.set(e.step, row);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

export function ChartsPanel() {
  const series = useStudio((s) => s.run.series);
  const evals = useStudio((s) => s.run.evals);
  const [smoothing, setSmoothing] = useState(0.6);
  const [log, setLog] = useState(false);
  const rows = useMemo(() => merge(series, evals, smoothing, 600), [series, evals, smoothing]);
  const pick = (keys: string[]) => rows.filter((r) => keys.some((k) => r[k] !== null && r[k] !== undefined));
  const last = series.at(-1);
  const lastEval = evals.at(-1);

  return (
    <section className="panel" aria-labelledby="charts-title" data-testid="charts-panel">
      <div className="panel-head">
        <h2 id="charts-title">Charts</h2>
        <div className="row chart-controls">
          <label className="inline" htmlFor="smoothing">
            Smoothing
            <input id="smoothing" type="range" min={0} max={0.99} step={0.01} value={smoothing} onChange={(e) => setSmoothing(Number(e.target.value))} />
            <output htmlFor="smoothing">{smoothing.toFixed(2)}</output>
          </label>
          <label className="inline">
            <input type="checkbox" checked={log} onChange={(e) => setLog(e.target.checked)} data-testid="log-scale" />
            Log scale
          </label>
        </div>
      </div>
      <div className="charts">
        <Chart title="Loss" testId="chart-loss" log={log} format={(v) => metric(v, 3)} latest={last ? `train ${metric(last.loss)}${lastEval ? ` · val ${metric(lastEval.loss)}` : ''}` : '—'}
          rows={pick(['loss', 'valLoss'])}
          series={[
            { key: 'loss', label: 'train (raw)', color: 'var(--c1)', faint: true },
            { key: 'lossSmooth', label: 'train', color: 'var(--c1)' },
            { key: 'valLoss', label: 'validation', color: 'var(--c2)', sparse: true },
          ]} />
        <Chart title="Perplexity" testId="chart-ppl" log={log} format={(v) => metric(v, 3)} latest={lastEval ? `val ${metric(lastEval.perplexity)}` : last ? `train ${metric(Math.exp(last.loss))}` : '—'}
          rows={pick(['ppl', 'valPpl'])}
          series={[
            { key: 'ppl', label: 'train', color: 'var(--c1)' },
            { key: 'valPpl', label: 'validation', color: 'var(--c2)', sparse: true },
          ]} />
        <Chart title="Learning rate" testId="chart-lr" log={false} format={(v) => v.toExponential(1)} latest={last ? last.lr.toExponential(2) : '—'}
          rows={pick(['lr'])} series={[{ key: 'lr', label: 'top group', color: 'var(--c3)' }]} />
        <Chart title="Gradient norm (before clipping)" testId="chart-gradnorm" log={log} format={(v) => metric(v, 3)} latest={last ? metric(last.gradNorm) : '—'}
          rows={pick(['gradNorm'])}
          series={[
            { key: 'gradNorm', label: 'raw', color: 'var(--c4)', faint: true },
            { key: 'gradNormSmooth', label: 'norm', color: 'var(--c4)' },
          ]} />
        <Chart title="Tokens per second" testId="chart-tps" log={false} format={(v) => metric(v, 3)} latest={last ? metric(last.tokensPerSec, 3) : '—'}
          rows={pick(['tps'])} series={[{ key: 'tps', label: 'tokens/s', color: 'var(--c5)' }]} />
      </div>
    </section>
  );
}
