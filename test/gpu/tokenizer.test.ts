import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, cpSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CategoryWordError, ClipTokenizer } from '../../gpu/text/tokenizer.ts';
import { ModelLoadError } from '../../gpu/model/errors.ts';

const fixture = new URL('../fixtures/sd-tiny-a/', import.meta.url).pathname;
const tokenizerDir = join(fixture, 'model/tokenizer');
const vocab = JSON.parse(readFileSync(join(tokenizerDir, 'vocab.json'), 'utf8')) as Record<string, number>;
const cases = (JSON.parse(readFileSync(join(fixture, 'tokenizer_cases.json'), 'utf8')) as {
  cases: Array<{ text: string; input_ids: number[]; unpadded: number[] }>;
}).cases;
const tokenizer = ClipTokenizer.fromFolder(tokenizerDir);

test('special tokens and length come from the tokenizer files', () => {
  assert.equal(tokenizer.bosId, vocab['<|startoftext|>']);
  assert.equal(tokenizer.eosId, vocab['<|endoftext|>']);
  assert.equal(tokenizer.padId, vocab['<|endoftext|>']); // pad_token is <|endoftext|>, not 0
  assert.equal(tokenizer.maxLength, 77);
  assert.equal(tokenizer.vocabSize, Object.keys(vocab).length);
});

for (const c of cases) {
  test(`matches transformers' CLIPTokenizer on ${JSON.stringify(c.text.length > 40 ? `${c.text.slice(0, 40)}…` : c.text)}`, () => {
    assert.deepEqual(tokenizer.encode(c.text), c.input_ids);
    assert.deepEqual([tokenizer.bosId, ...tokenizer.tokenize(c.text), tokenizer.eosId], c.unpadded);
  });
}

test('the fixture covers truncation: an over-long prompt keeps 75 tokens between bos and eos', () => {
  const long = cases.find((c) => c.unpadded.length > 77);
  assert.ok(long, 'fixture has an over-long prompt');
  const ids = tokenizer.encode(long.text);
  assert.equal(ids.length, 77);
  assert.deepEqual(ids.slice(0, 76), long.unpadded.slice(0, 76));
  assert.equal(ids[76], tokenizer.eosId);
});

test('extra tokens (Perfusion placeholders) are matched literally and map to their ids', () => {
  const hugsy = tokenizer.vocabSize; // first id after the vocabulary
  const rex = tokenizer.vocabSize + 1;
  const extraTokens = new Map([['<hugsy>', hugsy], ['<rex>', rex]]);
  const prompt = 'a photo of <hugsy> and <rex>on the beach';
  const expected = [
    ...tokenizer.tokenize('a photo of'), hugsy, ...tokenizer.tokenize('and'), rex, ...tokenizer.tokenize('on the beach'),
  ];
  assert.deepEqual(tokenizer.tokenize(prompt, { extraTokens }), expected);
  const ids = tokenizer.encode(prompt, { extraTokens });
  assert.deepEqual(ids.slice(0, expected.length + 2), [tokenizer.bosId, ...expected, tokenizer.eosId]);
  assert.equal(ids.length, 77);
  // glued to words on both sides, it is still one token, and the words around it are unchanged
  assert.deepEqual(tokenizer.tokenize('dog<hugsy>dog', { extraTokens }), [vocab['dog</w>'], hugsy, vocab['dog</w>']]);
  // without the map the same text is ordinary punctuation and letters
  const plain = tokenizer.tokenize(prompt);
  assert.ok(!plain.includes(hugsy) && plain.length > expected.length);
  // matched literally: another casing is not the placeholder
  assert.ok(!tokenizer.tokenize('<HUGSY>', { extraTokens }).includes(hugsy));
  assert.equal(tokenizer.decode(ids, { extraTokens }), 'a photo of <hugsy> and <rex> on the beach');
});

test('a single-token category word has an id; a multi-token one is a clear error with suggestions', () => {
  assert.equal(tokenizer.tokenIdOf('dog'), vocab['dog</w>']);
  assert.equal(tokenizer.tokenIdOf(' Teddy '), vocab['teddy</w>']);
  assert.equal(tokenizer.tokenIdOf('teddybear'), undefined);
  assert.equal(tokenizer.tokenIdOf('<|endoftext|>'), undefined);
  assert.equal(tokenizer.categoryTokenId('mug'), vocab['mug</w>']);

  const err = (() => {
    try {
      tokenizer.categoryTokenId('teddybear');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof CategoryWordError);
  assert.equal(err.tokenCount, tokenizer.tokenize('teddybear').length);
  assert.ok(err.tokenCount > 1);
  assert.ok(err.suggestions.includes('teddy') && err.suggestions.includes('bear'), err.suggestions.join(','));
  assert.match(err.message, /"teddybear" is \d+ CLIP tokens.*single token.*Try one of: .*teddy/);
  for (const s of err.suggestions) assert.notEqual(tokenizer.tokenIdOf(s), undefined, `suggestion ${s} is one token`);

  // a two-word category suggests its single-token words, the last (the head noun) first
  assert.deepEqual(tokenizer.suggestSingleTokenWords('teddy bear').slice(0, 2), ['bear', 'teddy']);
  // a misspelling suggests the near word
  assert.equal(tokenizer.suggestSingleTokenWords('dogg')[0], 'dog');
  assert.throws(() => tokenizer.categoryTokenId('   '), /category word is empty/);
});

test('decode gives back the lower-cased text', () => {
  assert.equal(tokenizer.decode(tokenizer.encode('A Teddy bear wearing sunglasses')), 'a teddy bear wearing sunglasses');
  assert.equal(tokenizer.decode(tokenizer.encode('café 🐶')), 'café 🐶');
});

test('a missing or damaged tokenizer file is a ModelLoadError that names the file', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tokenizer-'));
  try {
    assert.throws(() => ClipTokenizer.fromFolder(join(tmp, 'nope')), (e: unknown) =>
      e instanceof ModelLoadError && /nope\/vocab\.json is missing/.test(e.message));
    cpSync(tokenizerDir, join(tmp, 'tok'), { recursive: true });
    writeFileSync(join(tmp, 'tok/merges.txt'), '#version: 0.2\no f</w>\nbroken-line\n');
    assert.throws(() => ClipTokenizer.fromFolder(join(tmp, 'tok')), /merges\.txt line 3 is not a merge/);
    rmSync(join(tmp, 'tok/merges.txt'));
    assert.throws(() => ClipTokenizer.fromFolder(join(tmp, 'tok')), /merges\.txt is missing/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
