// Labelled form controls with inline explanations: every input has a visible label, its hint
// and its error are tied to it for screen readers (aria-describedby, aria-invalid), and a
// number field keeps what the user types (e.g. "3e-") until it parses.
import { useId, useState, type ReactNode } from 'react';

interface Common {
  label: string;
  hint?: ReactNode;
  error?: string;
  disabled?: boolean;
  testId?: string;
}

function Described({ id, hint, error }: { id: string; hint?: ReactNode; error?: string }) {
  return (
    <>
      {hint && !error && <span id={`${id}-hint`} className="hint">{hint}</span>}
      {error && <span id={`${id}-err`} className="field-error" data-testid="field-error">{error}</span>}
    </>
  );
}

function describedBy(id: string, hint: unknown, error?: string): string | undefined {
  if (error) return `${id}-err`;
  return hint ? `${id}-hint` : undefined;
}

export function NumberField(p: Common & { value: number; onChange(v: number): void; step?: number | 'any'; min?: number; max?: number; integer?: boolean }) {
  const id = useId();
  const [text, setText] = useState(String(p.value));
  // Follow changes made elsewhere (a model's suggested rate, a reset) unless they are what was
  // typed: adjusted while rendering, when the value differs from the one last seen (React's
  // pattern for state derived from a changed prop, which needs no effect and no extra render).
  const [seen, setSeen] = useState(p.value);
  if (p.value !== seen) {
    setSeen(p.value);
    if (Number(text) !== p.value) setText(String(p.value));
  }
  const parsed = text.trim() === '' ? NaN : Number(text);
  const own = Number.isNaN(parsed) ? 'Enter a number.' : p.integer && !Number.isInteger(parsed) ? 'Enter a whole number.' : undefined;
  const error = own ?? p.error;
  return (
    <div className={`field${error ? ' invalid' : ''}`}>
      <label htmlFor={id}>{p.label}</label>
      <input
        id={id}
        data-testid={p.testId}
        type="text"
        inputMode={p.integer ? 'numeric' : 'decimal'}
        value={text}
        disabled={p.disabled}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy(id, p.hint, error)}
        onChange={(e) => {
          setText(e.target.value);
          const v = Number(e.target.value);
          if (e.target.value.trim() !== '' && !Number.isNaN(v)) p.onChange(v);
        }}
      />
      <Described id={id} hint={p.hint} error={error} />
    </div>
  );
}

export function TextField(p: Common & { value: string; onChange(v: string): void; placeholder?: string; multiline?: boolean }) {
  const id = useId();
  return (
    <div className={`field${p.error ? ' invalid' : ''}`}>
      <label htmlFor={id}>{p.label}</label>
      {p.multiline ? (
        <textarea id={id} data-testid={p.testId} value={p.value} rows={3} disabled={p.disabled} placeholder={p.placeholder}
          aria-invalid={p.error ? true : undefined} aria-describedby={describedBy(id, p.hint, p.error)} onChange={(e) => p.onChange(e.target.value)} />
      ) : (
        <input id={id} data-testid={p.testId} type="text" value={p.value} disabled={p.disabled} placeholder={p.placeholder} spellCheck={false}
          aria-invalid={p.error ? true : undefined} aria-describedby={describedBy(id, p.hint, p.error)} onChange={(e) => p.onChange(e.target.value)} />
      )}
      <Described id={id} hint={p.hint} error={p.error} />
    </div>
  );
}

export function SelectField<T extends string>(p: Common & { value: T; options: ReadonlyArray<{ value: T; label: string }>; onChange(v: T): void }) {
  const id = useId();
  return (
    <div className={`field${p.error ? ' invalid' : ''}`}>
      <label htmlFor={id}>{p.label}</label>
      <select id={id} data-testid={p.testId} value={p.value} disabled={p.disabled} aria-describedby={describedBy(id, p.hint, p.error)}
        onChange={(e) => {
          const opt = p.options.find((o) => o.value === e.target.value);
          if (opt) p.onChange(opt.value);
        }}>
        {p.options.map((o) => (
          <option key={o.value} value={o.value}>{o.label}</option>
        ))}
      </select>
      <Described id={id} hint={p.hint} error={p.error} />
    </div>
  );
}

export function CheckField(p: Omit<Common, 'error'> & { checked: boolean; onChange(v: boolean): void }) {
  const id = useId();
  return (
    <div className="field check">
      <input id={id} data-testid={p.testId} type="checkbox" checked={p.checked} disabled={p.disabled} aria-describedby={p.hint ? `${id}-hint` : undefined} onChange={(e) => p.onChange(e.target.checked)} />
      <label htmlFor={id}>{p.label}</label>
      {p.hint && <span id={`${id}-hint`} className="hint">{p.hint}</span>}
    </div>
  );
}

/** A progress bar with its label, for downloads, tokenization, evaluation and export. */
export function Progress({ label, done, total, unit, testId }: { label: string; done: number; total: number; unit: 'bytes' | 'items'; testId?: string }) {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const fmt = (n: number) => (unit === 'bytes' ? `${(n / 2 ** 20).toFixed(1)} MiB` : n.toLocaleString('en-US'));
  return (
    <div className="progress" data-testid={testId}>
      <div className="progress-label">
        <span>{label}</span>
        <span>{total > 0 ? `${fmt(done)} / ${fmt(total)}` : fmt(done)}</span>
      </div>
      <div className="bar" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(frac * 100)}>
        <div style={{ width: `${(total > 0 ? frac : 0.05) * 100}%` }} />
      </div>
    </div>
  );
}
