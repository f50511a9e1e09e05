// CLIP's byte-level BPE tokenizer, read from a diffusers `tokenizer/` folder (vocab.json + merges.txt), with
// the behaviour of transformers' CLIPTokenizer (transformers 5, tokenizers backend; sd-engine.md §1.3):
//   1. special tokens (and Perfusion's placeholder strings) are cut out of the raw text first;
//   2. each remaining span is normalised: NFC, every whitespace run → one space, lower-case;
//   3. split into words by CLIP's pattern (contractions, letter runs, single digits, punctuation runs),
//      each further split by GPT-2's byte-level pattern;
//   4. each word's UTF-8 bytes are mapped to printable characters (GPT-2's byte-to-unicode table), the last
//      one gets the end-of-word suffix `</w>`, and adjacent symbols are merged by merge rank;
//   5. `[bos] + tokens[:maxLength-2] + [eos]`, padded to maxLength with the pad token (EOS for SD 1.x).
// (transformers 4's slow tokenizer differs only for exotic input: it drops control characters and puts
// spaces around CJK ideographs.)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from '../model/errors.ts';

export interface TokenizeOptions {
  /**
   * Extra tokens matched literally in the raw text, before normalisation, like special tokens: e.g.
   * `<hugsy>` → 49408 (a Perfusion placeholder whose embedding the text encoder overrides).
   */
  extraTokens?: ReadonlyMap<string, number>;
}

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

/** A category word that is not exactly one CLIP token; `suggestions` are close single-token words. */
export class CategoryWordError extends Error {
  constructor(readonly word: string, readonly tokenCount: number, readonly suggestions: string[]) {
    super(
      tokenCount === 0
        ? 'The category word is empty; give one everyday word for what the concept is, e.g. "dog" or "mug".'
        : `The category "${word}" is ${tokenCount} CLIP tokens, but it must be a single token (one common word). ` +
            (suggestions.length ? `Try one of: ${suggestions.join(', ')}.` : 'Try a shorter, more common word.'),
    );
    this.name = 'CategoryWordError';
  }
}

const END_OF_WORD = '</w>';
/** CLIP's word pattern (transformers tokenization_clip.py), applied after lower-casing. */
const CLIP_WORDS = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\p{White_Space}\p{L}\p{N}]+/gu;
/** GPT-2's pattern, which tokenizers' ByteLevel pre-tokenizer applies to each CLIP word as well. */
const BYTE_LEVEL_WORDS = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;
const WHITESPACE_RUN = /\p{White_Space}+/gu;
const WORD_CACHE_LIMIT = 20_000;

/** GPT-2's reversible map from the 256 byte values to printable characters. */
function byteToUnicodeTable(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : next++);
  return table;
}

const BYTE_TO_UNICODE = byteToUnicodeTable();
const UNICODE_TO_BYTE = new Map(BYTE_TO_UNICODE.map((ch, b) => [ch, b]));
const utf8 = new TextEncoder();

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  /** ids 0..vocabSize-1 are the model's own; Perfusion's extra tokens go after them */
  readonly vocabSize: number;
  /** sequence length the text encoder takes (77) */
  readonly maxLength: number;
  private readonly vocab: Map<string, number>;
  private readonly tokenById: Map<number, string>;
  private readonly mergeRanks: Map<string, number>;
  /** special token strings (bos, eos, pad, unk, added tokens) → id, cut out of the raw text */
  private readonly specialTokens: Map<string, number>;
  private readonly wordCache = new Map<string, number[]>();
  private wholeWordList: string[] | null = null;

  constructor(init: {
    vocab: Map<string, number>;
    merges: Array<[string, string]>;
    bosToken: string;
    eosToken: string;
    padToken: string;
    unkToken: string;
    maxLength: number;
    addedTokens?: Map<string, number>;
  }) {
    this.vocab = init.vocab;
    this.mergeRanks = new Map(init.merges.map(([a, b], rank) => [`${a} ${b}`, rank]));
    this.specialTokens = new Map(init.addedTokens ?? []);
    const idOf = (token: string, role: string) => {
      const id = this.specialTokens.get(token) ?? this.vocab.get(token);
      if (id === undefined) throw new TokenizerError(`the tokenizer's ${role} token "${token}" is not in its vocabulary`);
      this.specialTokens.set(token, id);
      return id;
    };
    this.bosId = idOf(init.bosToken, 'start');
    this.eosId = idOf(init.eosToken, 'end');
    this.padId = idOf(init.padToken, 'padding');
    this.unkId = idOf(init.unkToken, 'unknown');
    this.tokenById = new Map();
    for (const [token, id] of this.vocab) this.tokenById.set(id, token);
    for (const [token, id] of this.specialTokens) this.tokenById.set(id, token);
    this.vocabSize = Math.max(...this.tokenById.keys()) + 1;
    if (!Number.isInteger(init.maxLength) || init.maxLength < 2) throw new TokenizerError(`invalid maximum length ${init.maxLength}`);
    this.maxLength = init.maxLength;
  }

  /**
   * Reads `vocab.json`, `merges.txt` and, when present, `tokenizer_config.json` / `special_tokens_map.json`
   * (bos/eos/pad/unk tokens, added tokens, model_max_length) from a diffusers `tokenizer/` folder.
   */
  static fromFolder(dir: string): ClipTokenizer {
    const vocabJson = readJson(join(dir, 'vocab.json'), true) as Record<string, unknown>;
    if (typeof vocabJson !== 'object' || vocabJson === null || Array.isArray(vocabJson)) {
      throw new ModelLoadError(`${join(dir, 'vocab.json')} should map tokens to ids but is not a JSON object.`);
    }
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(vocabJson)) {
      if (!Number.isInteger(id) || (id as number) < 0) {
        throw new ModelLoadError(`${join(dir, 'vocab.json')}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a whole number.`);
      }
      vocab.set(token, id as number);
    }
    const merges = readMerges(join(dir, 'merges.txt'));
    const config = (readJson(join(dir, 'tokenizer_config.json'), false) ?? {}) as Record<string, unknown>;
    const specialMap = (readJson(join(dir, 'special_tokens_map.json'), false) ?? {}) as Record<string, unknown>;
    const tokenString = (key: string, fallback: string) => tokenContent(config[key]) ?? tokenContent(specialMap[key]) ?? fallback;
    const addedTokens = new Map<string, number>();
    const decoder = config.added_tokens_decoder;
    if (typeof decoder === 'object' && decoder !== null) {
      for (const [id, entry] of Object.entries(decoder as Record<string, unknown>)) {
        const content = tokenContent(entry);
        if (content !== undefined && Number.isInteger(Number(id))) addedTokens.set(content, Number(id));
      }
    }
    const maxLength = config.model_max_length;
    try {
      return new ClipTokenizer({
        vocab,
        merges,
        bosToken: tokenString('bos_token', '<|startoftext|>'),
        eosToken: tokenString('eos_token', '<|endoftext|>'),
        padToken: tokenString('pad_token', '<|endoftext|>'),
        unkToken: tokenString('unk_token', '<|endoftext|>'),
        // transformers writes a huge sentinel when no length is known; CLIP's is 77
        maxLength: typeof maxLength === 'number' && Number.isInteger(maxLength) && maxLength <= 4096 ? maxLength : 77,
        addedTokens,
      });
    } catch (err) {
      if (err instanceof TokenizerError) throw new ModelLoadError(`The tokenizer in ${dir} is unusable: ${err.message}.`, { cause: err });
      throw err;
    }
  }

  /** `maxLength` ids: `[bos] + tokens (truncated) + [eos]`, padded with the pad token. */
  encode(text: string, opts?: TokenizeOptions): number[] {
    const tokens = this.tokenize(text, opts).slice(0, this.maxLength - 2);
    const ids = [this.bosId, ...tokens, this.eosId];
    while (ids.length < this.maxLength) ids.push(this.padId);
    return ids;
  }

  /** The token ids of `text`, without bos/eos, padding or truncation. */
  tokenize(text: string, opts?: TokenizeOptions): number[] {
    const literals = this.literalTokens(opts?.extraTokens);
    const ids: number[] = [];
    for (const part of splitOnLiterals(text, literals)) {
      if (typeof part === 'number') ids.push(part);
      else for (const word of preTokenize(normalize(part))) ids.push(...this.bpeWord(word));
    }
    return ids;
  }

  /** How many tokens `text` has before truncation (the encoder sees at most maxLength - 2). */
  countTokens(text: string, opts?: TokenizeOptions): number {
    return this.tokenize(text, opts).length;
  }

  /** The id of `word` when it is exactly one token (e.g. "dog" → the id of `dog</w>`), else undefined. */
  tokenIdOf(word: string): number | undefined {
    const ids = this.tokenize(word);
    return ids.length === 1 && !this.isSpecial(ids[0]!) ? ids[0] : undefined;
  }

  /**
   * The id of a Perfusion category word, which must be one token; otherwise a CategoryWordError whose
   * message suggests close single-token words.
   */
  categoryTokenId(word: string): number {
    const id = this.tokenIdOf(word);
    if (id !== undefined) return id;
    throw new CategoryWordError(word.trim(), this.tokenize(word).length, this.suggestSingleTokenWords(word));
  }

  /**
   * Whole words of the vocabulary that are single tokens and close to `word`: first its own parts that are
   * single tokens (the last word first: "teddy bear" → "bear"), then the nearest by edit distance.
   */
  suggestSingleTokenWords(word: string, limit = 5): string[] {
    const target = normalize(word).trim();
    const out: string[] = [];
    const parts = target.split(/[^\p{L}\p{N}]+/u).filter(Boolean).reverse();
    for (const part of parts) if (this.tokenIdOf(part) !== undefined && !out.includes(part)) out.push(part);
    const compact = parts.reverse().join('');
    const scored: Array<{ word: string; score: number }> = [];
    for (const candidate of this.wholeWords()) {
      if (out.includes(candidate)) continue;
      // a word inside the target ("teddybear" → "teddy", "bear") ranks with a near miss ("dogg" → "dog")
      const lengthGap = Math.abs(compact.length - candidate.length);
      if (compact.includes(candidate)) scored.push({ word: candidate, score: 5 + lengthGap });
      else {
        const distance = editDistance(compact, candidate, 4);
        if (distance <= 3) scored.push({ word: candidate, score: distance * 10 + lengthGap });
      }
    }
    scored.sort((a, b) => a.score - b.score || a.word.localeCompare(b.word));
    for (const s of scored) {
      if (out.length >= limit) break;
      out.push(s.word);
    }
    return out.slice(0, limit);
  }

  /** Text of the ids (special tokens and padding left out; extra tokens shown by their strings when given). */
  decode(ids: readonly number[], opts?: TokenizeOptions): string {
    const extraById = new Map([...(opts?.extraTokens ?? [])].map(([s, id]) => [id, s]));
    const pieces: string[] = [];
    let symbols = '';
    const flush = () => {
      if (symbols) pieces.push(decodeSymbols(symbols).replaceAll(END_OF_WORD, ' '));
      symbols = '';
    };
    for (const id of ids) {
      const extra = extraById.get(id);
      if (extra !== undefined) {
        flush();
        pieces.push(` ${extra} `);
      } else if (!this.isSpecial(id)) {
        symbols += this.tokenById.get(id) ?? '';
      }
    }
    flush();
    return pieces.join('').replace(/ +/g, ' ').trim();
  }

  /** Vocabulary entries that are whole words of 3+ letters (`dog</w>`), decoded; computed on first use. */
  private wholeWords(): string[] {
    if (!this.wholeWordList) {
      this.wholeWordList = [];
      for (const token of this.vocab.keys()) {
        if (!token.endsWith(END_OF_WORD)) continue;
        const word = decodeSymbols(token.slice(0, -END_OF_WORD.length));
        if (word.length >= 3 && /^\p{L}+$/u.test(word)) this.wholeWordList.push(word);
      }
    }
    return this.wholeWordList;
  }

  private isSpecial(id: number): boolean {
    return id === this.bosId || id === this.eosId || id === this.padId || id === this.unkId;
  }

  private literalTokens(extra: ReadonlyMap<string, number> | undefined): Map<string, number> {
    if (!extra || extra.size === 0) return this.specialTokens;
    const all = new Map(this.specialTokens);
    for (const [text, id] of extra) {
      if (text.length === 0) throw new TokenizerError('an extra token must not be the empty string');
      if (!Number.isInteger(id) || id < 0) throw new TokenizerError(`extra token "${text}" has an invalid id ${id}`);
      all.set(text, id);
    }
    return all;
  }

  /** BPE of one pre-tokenised word: byte symbols, end-of-word suffix on the last, merges by rank. */
  private bpeWord(word: string): number[] {
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    const symbols = Array.from(utf8.encode(word), (b) => BYTE_TO_UNICODE[b]!);
    if (symbols.length === 0) return [];
    symbols[symbols.length - 1] += END_OF_WORD;
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.mergeRanks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const [first, second] = [symbols[best]!, symbols[best + 1]!];
      // merge every occurrence of the best pair, left to right
      const merged: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === first && symbols[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(symbols[i]!);
        }
      }
      symbols.splice(0, symbols.length, ...merged);
    }
    const ids = symbols.map((s) => this.vocab.get(s) ?? this.unkId);
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    return ids;
  }
}

/** NFC, whitespace runs → one space, lower-case per code point (as tokenizers' Lowercase does). */
function normalize(text: string): string {
  let out = '';
  for (const ch of text.normalize('NFC').replace(WHITESPACE_RUN, ' ')) out += ch.toLowerCase();
  return out;
}

function preTokenize(text: string): string[] {
  const words: string[] = [];
  for (const [clipWord] of text.matchAll(CLIP_WORDS)) {
    for (const [word] of clipWord.matchAll(BYTE_LEVEL_WORDS)) words.push(word);
  }
  return words;
}

/** Splits raw text into spans and literal token ids; at each position the longest literal wins. */
function splitOnLiterals(text: string, literals: ReadonlyMap<string, number>): Array<string | number> {
  const byLength = [...literals.keys()].sort((a, b) => b.length - a.length);
  const parts: Array<string | number> = [];
  let spanStart = 0;
  let i = 0;
  while (i < text.length) {
    const hit = byLength.find((literal) => text.startsWith(literal, i));
    if (hit === undefined) {
      i++;
      continue;
    }
    if (i > spanStart) parts.push(text.slice(spanStart, i));
    parts.push(literals.get(hit)!);
    i += hit.length;
    spanStart = i;
  }
  if (spanStart < text.length) parts.push(text.slice(spanStart));
  return parts;
}

/** Byte-level symbols back to text (invalid UTF-8 becomes U+FFFD). */
function decodeSymbols(symbols: string): string {
  const bytes: number[] = [];
  let pending = '';
  const flush = () => {
    if (pending) bytes.push(...utf8.encode(pending));
    pending = '';
  };
  for (const ch of symbols) {
    const b = UNICODE_TO_BYTE.get(ch);
    if (b === undefined) pending += ch;
    else {
      flush();
      bytes.push(b);
    }
  }
  flush();
  return new TextDecoder().decode(Uint8Array.from(bytes));
}

/** Levenshtein distance, giving up (returning `cap`) once it must exceed cap - 1. */
function editDistance(a: string, b: string, cap: number): number {
  const x = Array.from(a);
  const y = Array.from(b);
  if (Math.abs(x.length - y.length) >= cap) return cap;
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= y.length; j++) {
      const v = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
      row.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin >= cap) return cap;
    prev = row;
  }
  return Math.min(prev[y.length]!, cap);
}

/** A token in tokenizer_config.json / special_tokens_map.json: a string or an AddedToken object. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

function readJson(path: string, required: boolean): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !required) return undefined;
    throw new ModelLoadError(`The tokenizer file ${path} is missing or unreadable (${(err as NodeJS.ErrnoException).code}).`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ModelLoadError(`The tokenizer file ${path} is not valid JSON.`);
  }
}

function readMerges(path: string): Array<[string, string]> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ModelLoadError(`The tokenizer file ${path} is missing or unreadable (${(err as NodeJS.ErrnoException).code}).`);
  }
  const merges: Array<[string, string]> = [];
  for (const [index, line] of text.split('\n').entries()) {
    const trimmed = line.replace(/\r$/, '');
    if (trimmed === '' || (index === 0 && trimmed.startsWith('#version'))) continue;
    const pair = trimmed.split(' ');
    if (pair.length !== 2 || !pair[0] || !pair[1]) {
      throw new ModelLoadError(`${path} line ${index + 1} is not a merge of two symbols: ${JSON.stringify(trimmed)}.`);
    }
    merges.push([pair[0], pair[1]]);
  }
  return merges;
}
