// The uncentered input covariance C of the edited projections (perfusion-spec.md §2): the second moment of the
// text encoder's output over a prompt corpus, with every token from BOS through the first EOS of each prompt a
// sample and the sum divided by the number of prompts ([L]'s rule). C is computed once per model, inverted in
// float64 (Cholesky, after an optional ridge λ = ridge·tr(C)/hidden) and cached by model hash; concepts record
// its hash, because training and generation must use the same C.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { invertSpd, NotPositiveDefiniteError } from './linalg.ts';

/** The text encoder's output for a batch of prompts, as the caller's encode function returns it. */
export interface EncodedBatch {
  /** [B, seqLen, hidden] last_hidden_state, row-major */
  encodings: Float32Array;
  /** per prompt, the position of its first EOS token */
  eosPositions: number[];
}

export type EncodePrompts = (prompts: string[]) => Promise<EncodedBatch>;

export interface Covariance {
  readonly hidden: number;
  /** C as inverted (ridge included), [hidden·hidden] row-major */
  readonly matrix: Float32Array;
  /** C⁻¹ [hidden·hidden] row-major */
  readonly inverse: Float32Array;
  /** covarianceHash(matrix) */
  readonly hash: string;
  readonly promptCount: number;
  readonly tokenCount: number;
  /** λ added to the diagonal before inverting */
  readonly ridge: number;
  /** what C was estimated from, e.g. "built-in corpus v1, 10000 prompts" */
  readonly source: string;
}

export class CovarianceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CovarianceError';
  }
}

/** The ridge factor used unless the caller says otherwise: λ = 1e-4·tr(C)/hidden (spec §2.5). */
export const DEFAULT_RIDGE = 1e-4;

/** sha256 (hex) of the float32 bytes of C: what concepts record as their covariance hash. */
export function covarianceHash(matrix: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(matrix.buffer, matrix.byteOffset, matrix.byteLength)).digest('hex');
}

/** Tokens per device product: a fixed chunking of the token stream, so C does not depend on the batch size. */
const CHUNK_TOKENS = 1024;

/**
 * Σ e eᵀ over the kept tokens, summed in float64 across chunks. Each chunk's product is one device matmul
 * (float32 over CHUNK_TOKENS tokens); that is the O(tokens·hidden²) part, far too slow in JS. Chunks follow
 * the token stream, not the caller's batches, so the same prompts give the same bits whatever the batch size.
 */
export class CovarianceAccumulator {
  private readonly sum: Float64Array;
  private readonly pending: Float32Array;
  private pendingTokens = 0;
  promptCount = 0;
  tokenCount = 0;

  constructor(readonly hidden: number, readonly seqLen = 77) {
    this.sum = new Float64Array(hidden * hidden);
    this.pending = new Float32Array(CHUNK_TOKENS * hidden);
  }

  /** Adds a batch: tokens 0..eosPositions[b] of each prompt b are the samples. */
  async add(batch: EncodedBatch): Promise<void> {
    const { hidden, seqLen } = this;
    const prompts = batch.eosPositions.length;
    if (batch.encodings.length !== prompts * seqLen * hidden) {
      throw new Error(`a batch of ${prompts} encodings needs ${prompts}×${seqLen}×${hidden} values, got ${batch.encodings.length}`);
    }
    for (const eos of batch.eosPositions) {
      if (!Number.isInteger(eos) || eos < 1 || eos >= seqLen) throw new Error(`EOS position ${eos} is outside 1..${seqLen - 1}`);
    }
    for (const [b, eos] of batch.eosPositions.entries()) {
      for (let t = 0; t <= eos; t++) {
        const start = (b * seqLen + t) * hidden;
        this.pending.set(batch.encodings.subarray(start, start + hidden), this.pendingTokens * hidden);
        if (++this.pendingTokens === CHUNK_TOKENS) await this.flush();
      }
      this.tokenCount += eos + 1;
    }
    this.promptCount += prompts;
  }

  /** C = Σ e eᵀ / number of prompts, in float64 (exactly symmetric). */
  async covariance(): Promise<Float64Array> {
    if (this.promptCount === 0) throw new Error('no prompts were added');
    await this.flush();
    const { hidden } = this;
    const c = new Float64Array(hidden * hidden);
    for (let i = 0; i < hidden; i++) {
      for (let j = 0; j <= i; j++) {
        const v = (this.sum[i * hidden + j]! + this.sum[j * hidden + i]!) / (2 * this.promptCount);
        c[i * hidden + j] = v;
        c[j * hidden + i] = v;
      }
    }
    return c;
  }

  private async flush(): Promise<void> {
    if (this.pendingTokens === 0) return;
    const tokens = this.pendingTokens;
    const product = tf.tidy(() => {
      const x = tf.tensor2d(this.pending.subarray(0, tokens * this.hidden), [tokens, this.hidden]);
      return tf.matMul(x, x, true, false);
    });
    this.pendingTokens = 0;
    try {
      const values = await product.data();
      for (let i = 0; i < values.length; i++) this.sum[i]! += values[i]!;
    } finally {
      product.dispose();
    }
  }
}

/**
 * Adds the ridge, rounds C to float32 (the bytes that are hashed) and inverts that matrix in float64, so that
 * C⁻¹ is a function of the hash alone.
 */
export function finishCovariance(
  c: Float64Array, hidden: number, facts: { promptCount: number; tokenCount: number; source: string }, ridgeFactor = DEFAULT_RIDGE,
): Covariance {
  let trace = 0;
  for (let i = 0; i < hidden; i++) trace += c[i * hidden + i]!;
  const ridge = (ridgeFactor * trace) / hidden;
  const matrix = Float32Array.from(c);
  for (let i = 0; i < hidden; i++) matrix[i * hidden + i] = c[i * hidden + i]! + ridge;
  let inverse: Float64Array;
  try {
    inverse = invertSpd(matrix, hidden);
  } catch (err) {
    if (!(err instanceof NotPositiveDefiniteError)) throw err;
    throw new CovarianceError(
      `The text covariance is singular (from ${facts.promptCount} prompts, ${facts.tokenCount} tokens), so it cannot be inverted. ` +
        'Use more, more varied prompts or a larger ridge.', { cause: err });
  }
  return {
    hidden, matrix, inverse: Float32Array.from(inverse), hash: covarianceHash(matrix), ridge, ...facts,
  };
}

export interface EstimateOptions {
  hidden: number;
  seqLen?: number;
  /** prompts per encode call (default 32) */
  batchSize?: number;
  /** λ = ridge·tr(C)/hidden (default DEFAULT_RIDGE; 0 for none) */
  ridge?: number;
  /** recorded in the result */
  source?: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** Estimates C from `prompts` through the caller's text encoder and inverts it. */
export async function estimateCovariance(encode: EncodePrompts, prompts: readonly string[], opts: EstimateOptions): Promise<Covariance> {
  const batchSize = opts.batchSize ?? 32;
  const accumulator = new CovarianceAccumulator(opts.hidden, opts.seqLen ?? 77);
  for (let start = 0; start < prompts.length; start += batchSize) {
    opts.signal?.throwIfAborted();
    const batch = prompts.slice(start, start + batchSize);
    const encoded = await encode(batch);
    if (encoded.eosPositions.length !== batch.length) {
      throw new Error(`encode returned ${encoded.eosPositions.length} EOS positions for ${batch.length} prompts`);
    }
    await accumulator.add(encoded);
    opts.onProgress?.(Math.min(start + batchSize, prompts.length), prompts.length);
  }
  return finishCovariance(await accumulator.covariance(), opts.hidden, {
    promptCount: accumulator.promptCount,
    tokenCount: accumulator.tokenCount,
    source: opts.source ?? `${prompts.length} prompts`,
  }, opts.ridge ?? DEFAULT_RIDGE);
}

// ---------------------------------------------------------------------------------------------------
// The cache: one file per model, `covariance-<model hash>.bin`:
//   "PRFSNCOV", u32 LE version, u32 LE header length H, H bytes of JSON (model hash, hidden, C hash, C⁻¹ hash,
//   prompt and token counts, ridge, source), zero bytes to a multiple of 4, float32 LE C [hidden²], C⁻¹ [hidden²].

const CACHE_MAGIC = 'PRFSNCOV';
const CACHE_VERSION = 1;

interface CacheHeader {
  modelHash: string;
  hidden: number;
  hash: string;
  promptCount: number;
  tokenCount: number;
  ridge: number;
  source: string;
  /** sha256 of the float32 bytes of C⁻¹ (C's own is `hash`) */
  inverseHash: string;
}

export function covarianceCacheFile(dir: string, modelHash: string): string {
  const safe = /^[A-Za-z0-9_.-]{1,128}$/.test(modelHash) && !modelHash.startsWith('.')
    ? modelHash
    : createHash('sha256').update(modelHash).digest('hex');
  return join(dir, `covariance-${safe}.bin`);
}

/** Writes the cache file atomically (a temporary file renamed into place); returns its path. */
export function writeCovarianceCache(dir: string, modelHash: string, cov: Covariance): string {
  const header: CacheHeader = {
    modelHash, hidden: cov.hidden, hash: cov.hash, promptCount: cov.promptCount, tokenCount: cov.tokenCount,
    ridge: cov.ridge, source: cov.source, inverseHash: covarianceHash(cov.inverse),
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = (16 + headerBytes.byteLength + 3) & ~3;
  const out = new Uint8Array(dataStart + 8 * cov.matrix.length);
  out.set(new TextEncoder().encode(CACHE_MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, CACHE_VERSION, true);
  view.setUint32(12, headerBytes.byteLength, true);
  out.set(headerBytes, 16);
  out.set(new Uint8Array(cov.matrix.buffer, cov.matrix.byteOffset, cov.matrix.byteLength), dataStart);
  out.set(new Uint8Array(cov.inverse.buffer, cov.inverse.byteOffset, cov.inverse.byteLength), dataStart + 4 * cov.matrix.length);
  mkdirSync(dir, { recursive: true });
  const path = covarianceCacheFile(dir, modelHash);
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, out);
    renameSync(temporary, path);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw err;
  }
  return path;
}

/** The cached C of this model, null when there is none; CovarianceError when the file is damaged. */
export function readCovarianceCache(dir: string, modelHash: string): Covariance | null {
  const path = covarianceCacheFile(dir, modelHash);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const damaged = (why: string) => new CovarianceError(`The covariance cache ${path} is damaged (${why}); delete it to compute it again.`);
  if (bytes.byteLength < 16 || bytes.subarray(0, 8).toString('latin1') !== CACHE_MAGIC) throw damaged('wrong signature');
  if (bytes.readUInt32LE(8) !== CACHE_VERSION) throw damaged(`unknown version ${bytes.readUInt32LE(8)}`);
  const headerLength = bytes.readUInt32LE(12);
  if (16 + headerLength > bytes.byteLength) throw damaged('truncated header');
  let header: CacheHeader;
  try {
    header = JSON.parse(bytes.subarray(16, 16 + headerLength).toString('utf8')) as CacheHeader;
  } catch {
    throw damaged('unreadable header');
  }
  if (header.modelHash !== modelHash) throw damaged(`it belongs to model ${header.modelHash}`);
  if (!Number.isSafeInteger(header.hidden) || header.hidden <= 0) throw damaged('bad width');
  const n = header.hidden * header.hidden;
  const dataStart = (16 + headerLength + 3) & ~3;
  if (bytes.byteLength !== dataStart + 8 * n) throw damaged(`${bytes.byteLength} bytes where ${dataStart + 8 * n} are expected`);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + dataStart + 8 * n));
  const matrix = data.subarray(0, n);
  if (covarianceHash(matrix) !== header.hash || covarianceHash(data.subarray(n)) !== header.inverseHash) {
    throw damaged('its data does not match its checksums');
  }
  return {
    hidden: header.hidden, matrix, inverse: data.subarray(n), hash: header.hash, promptCount: header.promptCount,
    tokenCount: header.tokenCount, ridge: header.ridge, source: header.source,
  };
}

/**
 * This model's C from the cache in `dir`, else from `estimate()` (then written to the cache). A damaged cache
 * is replaced. Keep the cache: concepts only work with the C they were taught with, and an estimate on another
 * backend may differ in its last bits.
 */
export async function cachedCovariance(
  dir: string, modelHash: string, estimate: () => Promise<Covariance>,
): Promise<{ covariance: Covariance; fromCache: boolean }> {
  try {
    const cached = readCovarianceCache(dir, modelHash);
    if (cached) return { covariance: cached, fromCache: true };
  } catch (err) {
    if (!(err instanceof CovarianceError)) throw err;
  }
  const covariance = await estimate();
  writeCovarianceCache(dir, modelHash, covariance);
  return { covariance, fromCache: false };
}
