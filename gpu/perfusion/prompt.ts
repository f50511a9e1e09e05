// Concept mentions in a prompt: `<name>` → a placeholder token whose word embedding is the concept's v
// (perfusion-spec.md §6.3, §7). Independent of the tokenizer: the caller passes its encode function, which must
// match the `extraTokens` strings literally (ClipTokenizer.encode does).
import * as tf from '@tensorflow/tfjs-core';
import type { ConceptArtifact } from '../types.ts';

/** What a concept name may be: letters, digits, `_` and `-`. */
export const CONCEPT_NAME = /^[\p{L}\p{N}_-]{1,64}$/u;
const MENTION = /<([\p{L}\p{N}_-]{1,64})>/gu;

export type EncodeText = (text: string, opts: { extraTokens: ReadonlyMap<string, number> }) => number[];

export interface ConceptMention {
  /** the name as written */
  name: string;
  /** [start, end) of `<name>` in the prompt */
  start: number;
  end: number;
}

/** A prompt that names concepts nobody taught (in this scope); `suggestions` maps each to close known names. */
export class UnknownConceptError extends Error {
  constructor(readonly names: string[], readonly suggestions: ReadonlyMap<string, string[]>, known: readonly string[]) {
    const parts = names.map((n) => {
      const close = suggestions.get(n) ?? [];
      return close.length ? `<${n}> (did you mean ${close.map((c) => `<${c}>`).join(' or ')}?)` : `<${n}>`;
    });
    const tail = known.length === 0
      ? 'No concepts have been taught here yet; teach one first.'
      : [...suggestions.values()].some((s) => s.length)
        ? ''
        : `Known concepts: ${known.slice(0, 10).map((k) => `<${k}>`).join(', ')}${known.length > 10 ? ', …' : ''}.`;
    super(`I don't know the concept${names.length > 1 ? 's' : ''} ${parts.join(', ')}. ${tail}`.trim());
    this.name = 'UnknownConceptError';
  }
}

/** A prompt whose concepts cannot be placed, e.g. a mention cut off by the 77-token limit. */
export class ConceptPromptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConceptPromptError';
  }
}

export function findConceptMentions(prompt: string): ConceptMention[] {
  return [...prompt.matchAll(MENTION)].map((m) => ({ name: m[1]!, start: m.index, end: m.index + m[0].length }));
}

export interface ConceptPrompt {
  /** the mentioned concepts, in order of first mention */
  concepts: ConceptArtifact[];
  /** the prompt as the tokenizer sees it: every mention written `<name>` with the concept's own spelling */
  text: string;
  /** placeholder string → token id (ids from `firstExtraTokenId` on), for the tokenizer's `extraTokens` */
  extraTokens: Map<string, number>;
  /** each concept's placeholder token id, in `concepts` order */
  tokenIds: number[];
  /** encode(text) */
  ids: number[];
  /** the prompt with every mention replaced by its concept's category word (global key-locking's K path) */
  superText: string;
  /** encode(superText); a category word is one token, so positions line up with `ids` */
  superIds: number[];
  /** per concept, the positions of its placeholder in `ids` */
  positions: number[][];
}

/**
 * Resolves the `<name>` mentions of `prompt` against `available` (exact name first, then ignoring case) and
 * tokenizes it. UnknownConceptError for names not there, ConceptPromptError when a mention is truncated away.
 */
export function prepareConceptPrompt(
  prompt: string, available: readonly ConceptArtifact[], opts: { encode: EncodeText; firstExtraTokenId: number },
): ConceptPrompt {
  const byName = new Map<string, ConceptArtifact>();
  for (const c of available) {
    if (byName.has(c.name)) throw new Error(`two concepts are named "${c.name}"`);
    byName.set(c.name, c);
  }
  const resolve = (name: string) => {
    const exact = byName.get(name);
    if (exact) return exact;
    const folded = available.filter((c) => c.name.toLowerCase() === name.toLowerCase());
    return folded.length === 1 ? folded[0] : undefined;
  };

  const mentions = findConceptMentions(prompt);
  const unknown = [...new Set(mentions.map((m) => m.name).filter((n) => !resolve(n)))];
  if (unknown.length) {
    const known = available.map((c) => c.name).sort((a, b) => a.localeCompare(b));
    throw new UnknownConceptError(unknown, new Map(unknown.map((n) => [n, closestNames(n, known)])), known);
  }

  const concepts: ConceptArtifact[] = [];
  let text = '';
  let superText = '';
  let last = 0;
  for (const m of mentions) {
    const concept = resolve(m.name)!;
    if (!concepts.includes(concept)) concepts.push(concept);
    text += `${prompt.slice(last, m.start)}<${concept.name}>`;
    superText += `${prompt.slice(last, m.start)}${concept.category}`;
    last = m.end;
  }
  text += prompt.slice(last);
  superText += prompt.slice(last);

  const tokenIds = concepts.map((_, i) => opts.firstExtraTokenId + i);
  const extraTokens = new Map(concepts.map((c, i) => [`<${c.name}>`, tokenIds[i]!]));
  const ids = opts.encode(text, { extraTokens });
  const superIds = opts.encode(superText, { extraTokens: new Map() });
  const positions = tokenIds.map((id) => ids.flatMap((x, p) => (x === id ? [p] : [])));
  const mentionCount = (c: ConceptArtifact) => mentions.filter((m) => resolve(m.name) === c).length;
  for (const [i, c] of concepts.entries()) {
    if (positions[i]!.length < mentionCount(c)) {
      throw new ConceptPromptError(
        `The prompt is too long: the text encoder reads only its first ${ids.length - 2} tokens, and <${c.name}> comes after that. ` +
          'Shorten the prompt or mention the concept earlier.');
    }
  }
  return { concepts, text, extraTokens, tokenIds, ids, superText, superIds, positions };
}

/** The concepts' word embeddings keyed by placeholder id, for the text encoder's `embeddingOverrides` (caller disposes). */
export function embeddingOverrides(prepared: Pick<ConceptPrompt, 'concepts' | 'tokenIds'>): Map<number, tf.Tensor1D> {
  return new Map(prepared.concepts.map((c, i) => [prepared.tokenIds[i]!, tf.tensor1d(c.embedding)]));
}

/** Known names within a small edit distance of `name` (case-insensitive), closest first, at most three. */
export function closestNames(name: string, known: readonly string[]): string[] {
  const target = name.toLowerCase();
  const limit = Math.max(2, Math.floor(target.length / 3));
  return known
    .map((k) => ({ k, d: editDistance(target, k.toLowerCase()) }))
    .filter(({ k, d }) => d <= limit || k.toLowerCase().startsWith(target) || target.startsWith(k.toLowerCase()))
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, 3)
    .map(({ k }) => k);
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
