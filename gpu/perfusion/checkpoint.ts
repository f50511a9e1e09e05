// A teaching run's saved progress: an opaque, versioned byte blob the bot stores with the job, so that a
// restart resumes where the run stopped instead of starting over. It holds everything the remaining steps
// depend on, so a resumed run gives the same concept as an uninterrupted one:
//
//   bytes 0..7    magic "PRFSTRAN"
//   bytes 8..11   format version, u32 little-endian
//   bytes 12..15  header length H, u32 little-endian
//   16..16+H      header: UTF-8 JSON (what the run is — concept, model, C, images —, where it is — next step,
//                 the batch split in use, the optimiser's step count, the losses so far —, payload sha256)
//   then zero bytes up to a multiple of 8, then the payload, little-endian:
//                 float64 i* [hidden] (the EMA is kept in float64), then float32: the embedding v [hidden],
//                 per layer o*_K [d_l] and o*_V [d_l], then the AdamW moments (m, v) of v and of each o*_V.
// The random draws of a step are a function of (seed, step), so the seed and the next step are the RNG state.
import { createHash } from 'node:crypto';

const MAGIC = 'PRFSTRAN';
export const CHECKPOINT_VERSION = 1;
const PREAMBLE_BYTES = 16;

/** What a run is: a checkpoint resumes only the run it was made by. */
export interface CheckpointIdentity {
  name: string;
  category: string;
  modelHash: string;
  covarianceHash: string;
  /** sha256 over the training images (sizes, pixels, masks) */
  imagesHash: string;
  seed: number;
  flip: boolean;
  /** batch × accumulation: the draws of every step depend on it */
  effectiveBatch: number;
}

export interface TrainingCheckpoint extends CheckpointIdentity {
  /** the next step to run (0-based), i.e. the number of steps done */
  step: number;
  /** the split of the effective batch in use (lowered when memory ran short) */
  batchSize: number;
  gradientAccumulation: number;
  /** the loss of every step done */
  losses: number[];
  hidden: number;
  layers: { name: string; outDim: number }[];
  iStar: Float64Array;
  embedding: Float32Array;
  oK: Float32Array[];
  oV: Float32Array[];
  /** AdamW: step count and moments in parameter order (embedding, then o*_V per layer) */
  optimizerStep: number;
  firstMoments: Float32Array[];
  secondMoments: Float32Array[];
}

/** A checkpoint that cannot be read (damaged, truncated, or from another version of the bot). */
export class CheckpointFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointFormatError';
  }
}

type Header = Omit<TrainingCheckpoint, 'iStar' | 'embedding' | 'oK' | 'oV' | 'firstMoments' | 'secondMoments'> & {
  payload: { bytes: number; sha256: string };
};

function float32Count(hidden: number, outDims: readonly number[]): number {
  const layers = outDims.reduce((a, b) => a + b, 0);
  // v, its two moments; o*_K, o*_V and the two moments of o*_V per layer
  return 3 * hidden + 4 * layers;
}

export function serializeCheckpoint(c: TrainingCheckpoint): Uint8Array {
  const outDims = c.layers.map((l) => l.outDim);
  const parts: (Float32Array | Float64Array)[] = [c.iStar, c.embedding];
  c.layers.forEach((_, l) => parts.push(c.oK[l]!, c.oV[l]!));
  parts.push(...c.firstMoments, ...c.secondMoments);
  const payloadBytes = 8 * c.hidden + 4 * float32Count(c.hidden, outDims);
  const payload = new Uint8Array(payloadBytes);
  let offset = 0;
  for (const part of parts) {
    payload.set(new Uint8Array(part.buffer, part.byteOffset, part.byteLength), offset);
    offset += part.byteLength;
  }
  if (offset !== payloadBytes) throw new Error(`checkpoint payload is ${offset} bytes; expected ${payloadBytes}`);
  const { iStar: _i, embedding: _e, oK: _k, oV: _v, firstMoments: _m, secondMoments: _s, ...facts } = c;
  const header: Header = { ...facts, payload: { bytes: payloadBytes, sha256: sha256(payload) } };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = align8(PREAMBLE_BYTES + headerBytes.byteLength);
  const out = new Uint8Array(payloadStart + payloadBytes);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, headerBytes.byteLength, true);
  out.set(headerBytes, PREAMBLE_BYTES);
  out.set(payload, payloadStart);
  return out;
}

export function parseCheckpoint(bytes: Uint8Array): TrainingCheckpoint {
  if (bytes.byteLength < PREAMBLE_BYTES || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new CheckpointFormatError('this is not a saved teaching progress (its first bytes are not the checkpoint signature)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) {
    throw new CheckpointFormatError(`the saved teaching progress has format version ${version}; this version of the bot reads ${CHECKPOINT_VERSION}`);
  }
  const headerLength = view.getUint32(12, true);
  if (PREAMBLE_BYTES + headerLength > bytes.byteLength) throw new CheckpointFormatError('the saved teaching progress is truncated');
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength))) as Header;
  } catch {
    throw new CheckpointFormatError('the saved teaching progress is damaged (unreadable header)');
  }
  const valid = typeof header === 'object' && header !== null && Number.isSafeInteger(header.hidden) && header.hidden > 0 &&
    Array.isArray(header.layers) && header.layers.every((l) => Number.isSafeInteger(l?.outDim) && l.outDim > 0) &&
    Array.isArray(header.losses) && Number.isSafeInteger(header.step) && typeof header.payload?.sha256 === 'string';
  if (!valid) throw new CheckpointFormatError('the saved teaching progress is damaged (incomplete header)');
  const outDims = header.layers.map((l) => l.outDim);
  const payloadBytes = 8 * header.hidden + 4 * float32Count(header.hidden, outDims);
  const payloadStart = align8(PREAMBLE_BYTES + headerLength);
  if (header.payload.bytes !== payloadBytes || bytes.byteLength !== payloadStart + payloadBytes) {
    throw new CheckpointFormatError('the saved teaching progress is truncated or damaged (wrong size)');
  }
  const payload = bytes.slice(payloadStart);
  if (sha256(payload) !== header.payload.sha256) throw new CheckpointFormatError('the saved teaching progress is damaged (checksum mismatch)');
  const iStar = new Float64Array(payload.buffer, 0, header.hidden);
  const floats = new Float32Array(payload.buffer, 8 * header.hidden);
  let offset = 0;
  const take = (n: number) => floats.slice(offset, (offset += n));
  const embedding = take(header.hidden);
  const oK: Float32Array[] = [];
  const oV: Float32Array[] = [];
  for (const d of outDims) {
    oK.push(take(d));
    oV.push(take(d));
  }
  const momentSizes = [header.hidden, ...outDims];
  const firstMoments = momentSizes.map(take);
  const secondMoments = momentSizes.map(take);
  const { payload: _p, ...facts } = header;
  return { ...facts, iStar: Float64Array.from(iStar), embedding, oK, oV, firstMoments, secondMoments };
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
