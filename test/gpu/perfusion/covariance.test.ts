import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildPromptCorpus, cachedCovariance, CovarianceAccumulator, CovarianceError, covarianceHash, estimateCovariance,
  finishCovariance, readCovarianceCache, writeCovarianceCache, type EncodedBatch, DEFAULT_CORPUS_PROMPTS, MAX_CORPUS_PROMPTS,
} from '../../../gpu/perfusion/index.ts';
import { randomNormal, useWasm } from './helpers.ts';

const HIDDEN = 24;
const SEQ = 77;
const tmp = mkdtempSync(join(tmpdir(), 'perfusion-cov-'));

before(useWasm);
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * A stand-in text encoder for this unit test: deterministic encodings per prompt whose EOS sits after its words;
 * the padding positions after EOS hold large values that must not enter C.
 */
function fakeEncode(prompts: string[]): Promise<EncodedBatch> {
  const encodings = new Float32Array(prompts.length * SEQ * HIDDEN);
  const eosPositions: number[] = [];
  for (const [b, prompt] of prompts.entries()) {
    const words = prompt.split(' ').length;
    const eos = Math.min(words + 1, SEQ - 1);
    eosPositions.push(eos);
    let seed = 0;
    for (const ch of prompt) seed = (seed * 31 + ch.charCodeAt(0)) >>> 0;
    const next = randomNormal(seed);
    for (let t = 0; t < SEQ; t++) {
      for (let i = 0; i < HIDDEN; i++) {
        // BOS (t = 0) is the same for every prompt, as with a causal encoder
        const v = t === 0 ? Math.cos(i) : next() + 0.3 * Math.sin(i + t);
        encodings[(b * SEQ + t) * HIDDEN + i] = t > eos ? 1000 : v;
      }
    }
  }
  return Promise.resolve({ encodings, eosPositions });
}

/** Σ over prompts and tokens 0..eos of e eᵀ, divided by the number of prompts, in plain float64 loops. */
async function directCovariance(prompts: string[]): Promise<Float64Array> {
  const c = new Float64Array(HIDDEN * HIDDEN);
  const { encodings, eosPositions } = await fakeEncode(prompts);
  for (const [b, eos] of eosPositions.entries()) {
    for (let t = 0; t <= eos; t++) {
      const row = (b * SEQ + t) * HIDDEN;
      for (let i = 0; i < HIDDEN; i++) for (let j = 0; j < HIDDEN; j++) c[i * HIDDEN + j]! += encodings[row + i]! * encodings[row + j]!;
    }
  }
  return c.map((x) => x / prompts.length);
}

const prompts = buildPromptCorpus(150);

test('the accumulated C equals a direct float64 computation over BOS..first EOS, divided by the prompt count', async () => {
  const acc = new CovarianceAccumulator(HIDDEN, SEQ);
  for (let s = 0; s < prompts.length; s += 40) await acc.add(await fakeEncode(prompts.slice(s, s + 40)));
  const c = await acc.covariance();
  const direct = await directCovariance(prompts);
  const scale = Math.max(...direct.map(Math.abs));
  for (let i = 0; i < c.length; i++) assert.ok(Math.abs(c[i]! - direct[i]!) <= 1e-6 * scale, `entry ${i}: ${c[i]} vs ${direct[i]}`);
  assert.equal(acc.promptCount, prompts.length);
  const { eosPositions } = await fakeEncode(prompts);
  assert.equal(acc.tokenCount, eosPositions.reduce((a, e) => a + e + 1, 0));
  for (let i = 0; i < HIDDEN; i++) for (let j = 0; j < HIDDEN; j++) assert.equal(c[i * HIDDEN + j], c[j * HIDDEN + i]);
});

test('estimateCovariance: symmetric, C⁻¹C ≈ I, ridge = 1e-4·tr(C)/hidden, stable hash', async () => {
  const progress: number[] = [];
  const cov = await estimateCovariance(fakeEncode, prompts, { hidden: HIDDEN, batchSize: 64, onProgress: (d) => progress.push(d) });
  assert.deepEqual(progress, [64, 128, 150]);
  const n = HIDDEN;
  const direct = await directCovariance(prompts);
  let trace = 0;
  for (let i = 0; i < n; i++) trace += direct[i * n + i]!;
  assert.ok(Math.abs(cov.ridge - (1e-4 * trace) / n) < 1e-9 * trace);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      assert.equal(cov.matrix[i * n + j], cov.matrix[j * n + i]);
      assert.equal(cov.inverse[i * n + j], cov.inverse[j * n + i]);
      let s = 0;
      for (let k = 0; k < n; k++) s += cov.inverse[i * n + k]! * cov.matrix[k * n + j]!;
      assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-4, `(C⁻¹C)[${i},${j}] = ${s}`);
    }
  }
  assert.match(cov.hash, /^[0-9a-f]{64}$/);
  assert.equal(cov.hash, covarianceHash(cov.matrix));
  const again = await estimateCovariance(fakeEncode, prompts, { hidden: HIDDEN, batchSize: 17 });
  assert.equal(again.hash, cov.hash, 'the same prompts give the same hash whatever the batch size');
  assert.ok(Buffer.from(again.inverse.buffer).equals(Buffer.from(cov.inverse.buffer)));
  const other = await estimateCovariance(fakeEncode, prompts.slice(1), { hidden: HIDDEN });
  assert.notEqual(other.hash, cov.hash);
  const noRidge = await estimateCovariance(fakeEncode, prompts, { hidden: HIDDEN, ridge: 0 });
  assert.equal(noRidge.ridge, 0);
  assert.notEqual(noRidge.hash, cov.hash);
});

test('a singular C without ridge is a CovarianceError that says what to do', () => {
  const c = new Float64Array(4 * 4);
  c[0] = 1; // rank 1
  assert.throws(() => finishCovariance(c, 4, { promptCount: 1, tokenCount: 2, source: 'test' }, 0),
    (err: unknown) => err instanceof CovarianceError && /singular.*more, more varied prompts/.test(err.message));
});

test('the cache file round-trips per model hash; a damaged one is detected and recomputed', async () => {
  const dir = join(tmp, 'cache');
  const cov = await estimateCovariance(fakeEncode, prompts, { hidden: HIDDEN, source: 'test corpus' });
  assert.equal(readCovarianceCache(dir, 'model-a'), null);
  const path = writeCovarianceCache(dir, 'model-a', cov);
  const back = readCovarianceCache(dir, 'model-a')!;
  assert.deepEqual(back, cov);
  assert.equal(readCovarianceCache(dir, 'model-b'), null);
  assert.deepEqual(readdirSync(dir), ['covariance-model-a.bin']);

  let estimates = 0;
  const estimate = async () => (estimates++, cov);
  const first = await cachedCovariance(dir, 'model-a', estimate);
  assert.equal(first.fromCache, true);
  assert.equal(first.covariance.hash, cov.hash);
  assert.equal(estimates, 0);

  const bytes = readFileSync(path);
  bytes[bytes.byteLength - 5]! ^= 0x01;
  writeFileSync(path, bytes);
  assert.throws(() => readCovarianceCache(dir, 'model-a'), (err: unknown) => err instanceof CovarianceError && /damaged.*delete it/.test(err.message));
  const second = await cachedCovariance(dir, 'model-a', estimate);
  assert.equal(second.fromCache, false);
  assert.equal(estimates, 1);
  assert.deepEqual(readCovarianceCache(dir, 'model-a'), cov);

  writeFileSync(path, readFileSync(path).subarray(0, 100));
  assert.throws(() => readCovarianceCache(dir, 'model-a'), CovarianceError);
  // a model hash that is not a plain file name is hashed into one
  writeCovarianceCache(dir, '../../etc/passwd', cov);
  assert.ok(readdirSync(dir).every((f) => /^covariance-[A-Za-z0-9_.-]+\.bin$/.test(f)));
});

test('the built-in corpus: deterministic, ≥ 10,000 distinct prompts, short and long, photo captions', () => {
  const corpus = buildPromptCorpus(DEFAULT_CORPUS_PROMPTS);
  assert.equal(corpus.length, 10_000);
  assert.equal(new Set(corpus).size, 10_000);
  assert.deepEqual(buildPromptCorpus(50), corpus.slice(0, 50));
  const words = corpus.map((p) => p.split(' ').length);
  assert.ok(words.filter((w) => w <= 3).length > 300, 'short prompts');
  assert.ok(words.filter((w) => w >= 15).length > 1000, 'long prompts');
  assert.ok(Math.max(...words) < 40, 'prompts stay well inside 77 tokens');
  assert.ok(corpus.filter((p) => p.startsWith('a photo of')).length > 1000, '"a photo of …" captions');
  assert.equal(new Set(buildPromptCorpus(MAX_CORPUS_PROMPTS)).size, MAX_CORPUS_PROMPTS);
  assert.throws(() => buildPromptCorpus(MAX_CORPUS_PROMPTS + 1), RangeError);
  assert.throws(() => buildPromptCorpus(0), RangeError);
});
