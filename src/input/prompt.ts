// Prompts from people: length limits, `<name>` and `<name:0.8>` mentions resolved against the concepts
// visible in the scope, unknown names answered with the closest known ones.
import { UserError } from '../errors.ts';

export const MAX_PROMPT_CHARS = 500;
export const MAX_CONCEPTS_PER_PROMPT = 4;
export const CONCEPT_NAME = /^[a-z0-9_-]{2,32}$/;

/** `<name>` or `<name:strength>`; names are matched case-insensitively */
const MENTION = /<([^<>:\s]{1,64})(?::([^<>\s]*))?>/g;

export interface Mention {
  name: string;
  strength: number | null;
}

export interface ParsedPrompt {
  /** the prompt as the engine takes it: every mention written `<name>` in lowercase */
  text: string;
  mentions: Mention[];
}

export function checkPromptText(text: string, what: 'prompt' | 'negative prompt'): string {
  const t = text.replace(/\s+/g, ' ').trim();
  if (what === 'prompt' && !t) throw new UserError('The prompt is empty: describe what to draw, e.g. "a photo of <hugsy> on the beach".');
  if (t.length > MAX_PROMPT_CHARS) {
    throw new UserError(`The ${what} is ${t.length} characters long; the limit is ${MAX_PROMPT_CHARS}. Shorten it (the model reads only about 75 words anyway).`);
  }
  return t;
}

export function parsePrompt(raw: string): ParsedPrompt {
  const mentions = new Map<string, Mention>();
  const text = checkPromptText(raw, 'prompt').replace(MENTION, (_all, rawName: string, rawStrength: string | undefined) => {
    const name = rawName.toLowerCase();
    let strength: number | null = null;
    if (rawStrength !== undefined) {
      strength = Number(rawStrength);
      if (rawStrength === '' || !Number.isFinite(strength) || strength < 0 || strength > 1) {
        throw new UserError(`The strength in <${rawName}:${rawStrength}> must be a number from 0 to 1, e.g. <${name}:0.8>.`);
      }
    }
    const prev = mentions.get(name);
    if (!prev || (prev.strength === null && strength !== null)) mentions.set(name, { name, strength });
    return `<${name}>`;
  });
  if (mentions.size > MAX_CONCEPTS_PER_PROMPT) {
    throw new UserError(`The prompt uses ${mentions.size} concepts; at most ${MAX_CONCEPTS_PER_PROMPT} can be combined in one image.`);
  }
  return { text, mentions: [...mentions.values()] };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Up to `max` known names closest to `name` (prefix matches first, then by edit distance ≤ 3). */
export function closestNames(name: string, known: readonly string[], max = 3): string[] {
  return known
    .map((k) => ({ k, d: k.startsWith(name) || name.startsWith(k) ? 0.5 : editDistance(name, k) }))
    .filter((x) => x.d <= Math.max(2, Math.ceil(name.length / 3)))
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, max)
    .map((x) => x.k);
}

export function unknownConceptMessage(name: string, known: readonly string[]): string {
  const close = closestNames(name, known);
  if (close.length) return `I don't know <${name}> here. Did you mean ${close.map((c) => `<${c}>`).join(', ')}? (/concepts list shows them all)`;
  if (known.length === 0) return `I don't know <${name}>: no concepts have been taught here yet. Teach one with /teach.`;
  return `I don't know <${name}> here. /concepts list shows the ${known.length} concepts you can use, or teach it with /teach.`;
}
