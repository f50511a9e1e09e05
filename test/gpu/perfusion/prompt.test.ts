// Concept mentions with the real CLIP tokenizer of sd-tiny-a (its `extraTokens` placeholders).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import {
  closestNames, ConceptPromptError, embeddingOverrides, findConceptMentions, prepareConceptPrompt, UnknownConceptError,
} from '../../../gpu/perfusion/index.ts';
import { ClipTokenizer } from '../../../gpu/text/tokenizer.ts';
import type { ConceptArtifact } from '../../../gpu/types.ts';
import { fixturePath, useWasm } from './helpers.ts';

const tokenizer = ClipTokenizer.fromFolder(fixturePath('sd-tiny-a/model/tokenizer'));
const encode = (text: string, opts: { extraTokens: ReadonlyMap<string, number> }) => tokenizer.encode(text, opts);
const firstExtraTokenId = tokenizer.vocabSize;

function concept(name: string, category: string, fill: number): ConceptArtifact {
  return {
    name, category, categoryTokenId: tokenizer.categoryTokenId(category), modelHash: 'm', covarianceHash: 'c', beta: 0.7, tau: 0.15,
    layers: [], embedding: new Float32Array(32).fill(fill), iStar: new Float32Array(32), oK: [], oV: [],
  };
}

const hugsy = concept('hugsy', 'teddy', 1);
const rex = concept('Rex', 'dog', 2);
const mug = concept('mug_2', 'mug', 3);

before(useWasm);

test('findConceptMentions finds <name> spans and nothing else', () => {
  const prompt = 'a <hugsy> and <Rex-2> <3 love < spaced > <two words> <>';
  assert.deepEqual(findConceptMentions(prompt), [
    { name: 'hugsy', start: 2, end: 9 },
    { name: 'Rex-2', start: 14, end: 21 },
  ]);
  assert.deepEqual(findConceptMentions('no concepts here'), []);
});

test('prepareConceptPrompt: placeholders, ids, positions and the super prompt that lines up with them', () => {
  const p = prepareConceptPrompt('a photo of <hugsy> and <rex> on the beach, <HUGSY> again', [mug, hugsy, rex], { encode, firstExtraTokenId });
  assert.deepEqual(p.concepts.map((c) => c.name), ['hugsy', 'Rex']);
  assert.equal(p.text, 'a photo of <hugsy> and <Rex> on the beach, <hugsy> again');
  assert.equal(p.superText, 'a photo of teddy and dog on the beach, teddy again');
  assert.deepEqual([...p.extraTokens], [['<hugsy>', firstExtraTokenId], ['<Rex>', firstExtraTokenId + 1]]);
  assert.deepEqual(p.tokenIds, [firstExtraTokenId, firstExtraTokenId + 1]);
  assert.equal(p.ids.length, 77);
  assert.deepEqual(p.positions.map((x) => x.length), [2, 1]);
  assert.equal(p.positions[0]![0], 4, 'BOS a photo of <hugsy>');
  for (const [i, id] of p.tokenIds.entries()) assert.deepEqual(p.positions[i], p.ids.flatMap((x, pos) => (x === id ? [pos] : [])));
  for (const [i, c] of p.concepts.entries()) for (const pos of p.positions[i]!) assert.equal(p.superIds[pos], c.categoryTokenId);
  // apart from the placeholders, the concept prompt and the super prompt are the same tokens
  assert.deepEqual(p.ids.map((id, i) => (p.tokenIds.includes(id) ? p.superIds[i] : id)), p.superIds);
  assert.deepEqual(p.superIds, tokenizer.encode(p.superText));
});

test('embeddingOverrides maps each placeholder id to its concept embedding', async () => {
  const p = prepareConceptPrompt('<mug_2> on a table', [mug, hugsy], { encode, firstExtraTokenId });
  const overrides = embeddingOverrides(p);
  try {
    assert.deepEqual([...overrides.keys()], [firstExtraTokenId]);
    assert.deepEqual(Array.from(await overrides.get(firstExtraTokenId)!.data()), Array.from(mug.embedding));
  } finally {
    tf.dispose([...overrides.values()]);
  }
});

test('unknown mentions are an UnknownConceptError with the closest known names', () => {
  const failure = (prompt: string, available: ConceptArtifact[]) => {
    try {
      prepareConceptPrompt(prompt, available, { encode, firstExtraTokenId });
    } catch (err) {
      assert.ok(err instanceof UnknownConceptError);
      return err;
    }
    assert.fail('expected an UnknownConceptError');
  };
  const typo = failure('a photo of <hugys> with <rex> and <zzzzzz>', [hugsy, rex, mug]);
  assert.deepEqual(typo.names, ['hugys', 'zzzzzz']);
  assert.deepEqual(typo.suggestions.get('hugys'), ['hugsy']);
  assert.match(typo.message, /<hugys> \(did you mean <hugsy>\?\), <zzzzzz>/);
  assert.match(failure('<zzzzzz>', [hugsy, rex]).message, /Known concepts: <hugsy>, <Rex>\./);
  assert.match(failure('<hugsy>', []).message, /No concepts have been taught here yet/);
  assert.deepEqual(closestNames('mug', ['mug_2', 'mugs', 'hugsy', 'rug']), ['mugs', 'rug', 'mug_2']);
});

test('a mention cut off by the 77-token limit is a ConceptPromptError', () => {
  const long = `${'a photo of a dog on the beach, '.repeat(12)} with <hugsy>`;
  assert.throws(() => prepareConceptPrompt(long, [hugsy], { encode, firstExtraTokenId }),
    (err: unknown) => err instanceof ConceptPromptError && /too long.*<hugsy>/.test(err.message));
});
