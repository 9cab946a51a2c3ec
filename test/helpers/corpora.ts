// Public-domain corpus excerpts committed under test/fixtures/corpora (see its README).
import { readFileSync } from 'node:fs';

const DIR = new URL('../fixtures/corpora/', import.meta.url);

/** The first 250,000 characters of Dracula. */
export function draculaExcerpt(): string {
  return readFileSync(new URL('dracula-excerpt.txt', DIR), 'utf8');
}

/** Two 50,000-character pieces of tiny Shakespeare (its characters 0–50k and 300k–350k). */
export function shakespeareExcerpts(): [string, string] {
  const t = readFileSync(new URL('tinyshakespeare-excerpt.txt', DIR), 'utf8');
  return [t.slice(0, 50_000), t.slice(50_000)];
}
