// A taught concept as a small versioned binary (perfusion-spec.md §8):
//
//   bytes 0..7    magic "PRFSNCPT"
//   bytes 8..11   format version, u32 little-endian
//   bytes 12..15  header length H, u32 little-endian
//   16..16+H      header: UTF-8 JSON (name, category word and token id, model hash, C hash, generation β/τ,
//                 hidden width, the ordered layer list with names and widths, training facts — by convention
//                 `training.beta` / `training.tau` are the training gate —, payload length and sha256)
//   then zero bytes up to a multiple of 4, then the payload: little-endian float32
//                 embedding v [hidden], i* [hidden], then per layer in list order o*_K [d_l], o*_V [d_l]
//
// For SD 1.5 (hidden 768, Σd_l = 12,480) the payload is 26,496 floats = 105,984 bytes.
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import type { ConceptArtifact } from '../types.ts';

export const CONCEPT_MAGIC = 'PRFSNCPT';
export const CONCEPT_FORMAT_VERSION = 1;
const PREAMBLE_BYTES = 16;
/** a header is a few KB; anything near this is corrupt */
const MAX_HEADER_BYTES = 1 << 20;

if (endianness() !== 'LE') throw new Error('perfusion-bot reads and writes concept files on little-endian hosts only');

/** Concept bytes that cannot be read: not a concept, damaged, truncated, or from a newer version of the bot. */
export class ConceptFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConceptFormatError';
  }
}

/** A concept that cannot be used with the loaded model. */
export class ConceptCompatibilityError extends Error {
  constructor(readonly concept: string, readonly reason: 'model' | 'covariance' | 'layers', message: string) {
    super(message);
    this.name = 'ConceptCompatibilityError';
  }
}

interface ConceptHeader {
  name: string;
  category: string;
  categoryTokenId: number;
  modelHash: string;
  covarianceHash: string;
  beta: number;
  tau: number;
  hidden: number;
  layers: { name: string; outDim: number }[];
  training?: Record<string, unknown>;
  payload: { floats: number; sha256: string };
}

/** Floats in the payload of a concept for a model of text width `hidden` and edited layer widths `outDims`. */
export function conceptPayloadFloats(hidden: number, outDims: readonly number[]): number {
  return 2 * hidden + 2 * outDims.reduce((a, b) => a + b, 0);
}

export function serializeConcept(a: ConceptArtifact): Uint8Array {
  const hidden = a.embedding.length;
  if (hidden === 0 || a.iStar.length !== hidden) {
    throw new Error(`concept "${a.name}": the embedding has ${hidden} values and i* ${a.iStar.length}; both must be the text width`);
  }
  if (a.oK.length !== a.layers.length || a.oV.length !== a.layers.length) {
    throw new Error(`concept "${a.name}": ${a.layers.length} layers but ${a.oK.length} key and ${a.oV.length} value targets`);
  }
  for (const [l, layer] of a.layers.entries()) {
    if (a.oK[l]!.length !== layer.outDim || a.oV[l]!.length !== layer.outDim) {
      throw new Error(`concept "${a.name}": layer ${layer.name} is ${layer.outDim} wide but its targets have ${a.oK[l]!.length} and ${a.oV[l]!.length} values`);
    }
  }
  const payload = new Uint8Array(4 * conceptPayloadFloats(hidden, a.layers.map((l) => l.outDim)));
  let offset = 0;
  const put = (values: Float32Array) => {
    payload.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
    offset += values.byteLength;
  };
  put(a.embedding);
  put(a.iStar);
  for (let l = 0; l < a.layers.length; l++) {
    put(a.oK[l]!);
    put(a.oV[l]!);
  }
  const header: ConceptHeader = {
    name: a.name,
    category: a.category,
    categoryTokenId: a.categoryTokenId,
    modelHash: a.modelHash,
    covarianceHash: a.covarianceHash,
    beta: a.beta,
    tau: a.tau,
    hidden,
    layers: a.layers.map((l) => ({ name: l.name, outDim: l.outDim })),
    ...(a.training ? { training: a.training } : {}),
    payload: { floats: payload.byteLength / 4, sha256: sha256(payload) },
  };
  validateHeader(header);
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = align4(PREAMBLE_BYTES + headerBytes.byteLength);
  const out = new Uint8Array(payloadStart + payload.byteLength);
  out.set(new TextEncoder().encode(CONCEPT_MAGIC), 0);
  const view = new DataView(out.buffer);
  view.setUint32(8, CONCEPT_FORMAT_VERSION, true);
  view.setUint32(12, headerBytes.byteLength, true);
  out.set(headerBytes, PREAMBLE_BYTES);
  out.set(payload, payloadStart);
  return out;
}

export function parseConcept(bytes: Uint8Array): ConceptArtifact {
  if (bytes.byteLength < PREAMBLE_BYTES || new TextDecoder().decode(bytes.subarray(0, 8)) !== CONCEPT_MAGIC) {
    throw new ConceptFormatError('This is not a Perfusion concept file (its first bytes are not the concept signature).');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== CONCEPT_FORMAT_VERSION) {
    throw new ConceptFormatError(
      version > CONCEPT_FORMAT_VERSION
        ? `This concept was saved in format version ${version}, which this version of the bot cannot read (it reads version ${CONCEPT_FORMAT_VERSION}); update the bot.`
        : `This concept file has an unknown format version ${version}; it cannot be read.`,
    );
  }
  const headerLength = view.getUint32(12, true);
  if (headerLength > MAX_HEADER_BYTES || PREAMBLE_BYTES + headerLength > bytes.byteLength) {
    throw new ConceptFormatError(`This concept file is truncated or damaged: its header claims ${headerLength} bytes but the file has ${bytes.byteLength}.`);
  }
  let header: ConceptHeader;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength))) as ConceptHeader;
  } catch {
    throw new ConceptFormatError('This concept file is damaged: its header is not readable JSON.');
  }
  try {
    validateHeader(header);
  } catch (err) {
    throw new ConceptFormatError(`This concept file is damaged: ${(err as Error).message}.`);
  }
  const payloadStart = align4(PREAMBLE_BYTES + headerLength);
  const payloadBytes = 4 * header.payload.floats;
  if (bytes.byteLength < payloadStart + payloadBytes) {
    throw new ConceptFormatError(`This concept file is truncated: it has ${bytes.byteLength} bytes but needs ${payloadStart + payloadBytes}.`);
  }
  if (bytes.byteLength > payloadStart + payloadBytes) {
    throw new ConceptFormatError(`This concept file is damaged: it has ${bytes.byteLength - payloadStart - payloadBytes} unexpected bytes after its data.`);
  }
  // a copy: aligned for Float32Array whatever the caller's buffer, and independent of it
  const payload = bytes.slice(payloadStart, payloadStart + payloadBytes);
  if (sha256(payload) !== header.payload.sha256) {
    throw new ConceptFormatError('This concept file is damaged: its data does not match its checksum.');
  }
  const floats = new Float32Array(payload.buffer);
  let offset = 0;
  const take = (n: number) => {
    const part = floats.subarray(offset, offset + n);
    offset += n;
    return part;
  };
  const embedding = take(header.hidden);
  const iStar = take(header.hidden);
  const oK: Float32Array[] = [];
  const oV: Float32Array[] = [];
  for (const layer of header.layers) {
    oK.push(take(layer.outDim));
    oV.push(take(layer.outDim));
  }
  return {
    name: header.name,
    category: header.category,
    categoryTokenId: header.categoryTokenId,
    modelHash: header.modelHash,
    covarianceHash: header.covarianceHash,
    beta: header.beta,
    tau: header.tau,
    layers: header.layers.map((l) => ({ name: l.name, outDim: l.outDim })),
    embedding,
    iStar,
    oK,
    oV,
    ...(header.training ? { training: header.training } : {}),
  };
}

/** What the loaded model offers a concept: its hash, its covariance's hash and its edited layers. */
export interface ConceptTarget {
  modelHash: string;
  covarianceHash: string;
  layers: readonly { name: string; outDim: number; inDim?: number }[];
}

/**
 * Throws ConceptCompatibilityError, worded for a person, when `a` was made for another model, C or layer set,
 * and ConceptFormatError when its arrays do not fit its own layer list or hold non-finite values.
 */
export function checkCompatible(a: ConceptArtifact, target: ConceptTarget): void {
  const who = `The concept <${a.name}>`;
  const damage = dataProblem(a);
  if (damage) throw new ConceptFormatError(`${who} is damaged (${damage}); load it again from its file or teach it again.`);
  if (a.modelHash !== target.modelHash) {
    throw new ConceptCompatibilityError(a.name, 'model',
      `${who} was taught on a different model (${shortHash(a.modelHash)}) than the one loaded now (${shortHash(target.modelHash)}). ` +
        'Teach it again with this model to use it here.');
  }
  if (a.covarianceHash !== target.covarianceHash) {
    throw new ConceptCompatibilityError(a.name, 'covariance',
      `${who} was taught with a different text covariance (${shortHash(a.covarianceHash)}) than this model now uses (${shortHash(target.covarianceHash)}), ` +
        'so it would not blend correctly. Teach it again, or restore the covariance file it was taught with.');
  }
  const problem = layerMismatch(a, target.layers);
  if (problem) {
    throw new ConceptCompatibilityError(a.name, 'layers',
      `${who} does not fit this model's cross-attention layers (${problem}). Teach it again with this model.`);
  }
}

/** What is wrong with the arrays of an artifact (one made in memory rather than by parseConcept), or null. */
function dataProblem(a: ConceptArtifact): string | null {
  const vector = (x: unknown): x is Float32Array => x instanceof Float32Array;
  const finite = (x: Float32Array) => x.every(Number.isFinite);
  if (!Array.isArray(a.layers) || !Array.isArray(a.oK) || !Array.isArray(a.oV)) return 'its layer data is missing';
  if (!vector(a.embedding) || !vector(a.iStar) || a.embedding.length === 0 || a.iStar.length !== a.embedding.length) {
    return 'its embedding and target input are not two vectors of the same width';
  }
  if (a.oK.length !== a.layers.length || a.oV.length !== a.layers.length) return `${a.layers.length} layers but ${a.oK.length} key and ${a.oV.length} value targets`;
  for (const [l, layer] of a.layers.entries()) {
    const k = a.oK[l];
    const v = a.oV[l];
    if (!vector(k) || !vector(v) || k.length !== layer.outDim || v.length !== layer.outDim) return `the targets of ${layer.name} are not ${layer.outDim} wide`;
    if (!finite(k) || !finite(v)) return `the targets of ${layer.name} hold values that are not numbers`;
  }
  if (!finite(a.embedding) || !finite(a.iStar)) return 'its embedding or target input holds values that are not numbers';
  if (!Number.isFinite(a.beta) || !(Number.isFinite(a.tau) && a.tau > 0)) return `its strength ${a.beta} / temperature ${a.tau} are not usable`;
  return null;
}

function layerMismatch(a: ConceptArtifact, layers: ConceptTarget['layers']): string | null {
  if (a.layers.length !== layers.length) return `it edits ${a.layers.length} layers, the model has ${layers.length}`;
  const byName = new Map(layers.map((l) => [l.name, l]));
  for (const layer of a.layers) {
    const own = byName.get(layer.name);
    if (!own) return `the model has no layer ${layer.name}`;
    if (own.outDim !== layer.outDim) return `${layer.name} is ${own.outDim} wide in the model but ${layer.outDim} in the concept`;
    if (own.inDim !== undefined && own.inDim !== a.embedding.length) {
      return `the model's text width is ${own.inDim}, the concept's ${a.embedding.length}`;
    }
  }
  return null;
}

function validateHeader(h: ConceptHeader): void {
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(h)) throw new Error('the header is not an object');
  for (const key of ['name', 'category', 'modelHash', 'covarianceHash'] as const) {
    if (typeof h[key] !== 'string' || h[key].length === 0) throw new Error(`"${key}" must be a non-empty string`);
  }
  if (!Number.isSafeInteger(h.categoryTokenId) || h.categoryTokenId < 0) throw new Error('"categoryTokenId" must be a token id');
  if (!Number.isFinite(h.beta)) throw new Error('"beta" must be a number');
  if (!(Number.isFinite(h.tau) && h.tau > 0)) throw new Error('"tau" must be a positive number');
  if (!Number.isSafeInteger(h.hidden) || h.hidden <= 0) throw new Error('"hidden" must be a positive integer');
  if (!Array.isArray(h.layers) || h.layers.length === 0) throw new Error('"layers" must be a non-empty list');
  const names = new Set<string>();
  for (const layer of h.layers) {
    if (!isObject(layer) || typeof layer.name !== 'string' || !layer.name || !Number.isSafeInteger(layer.outDim) || layer.outDim <= 0) {
      throw new Error('every layer needs a name and a positive width');
    }
    if (names.has(layer.name)) throw new Error(`layer ${layer.name} is listed twice`);
    names.add(layer.name);
  }
  if (h.training !== undefined && !isObject(h.training)) throw new Error('"training" must be an object');
  if (!isObject(h.payload) || typeof h.payload.sha256 !== 'string') throw new Error('"payload" must give its length and checksum');
  const expected = conceptPayloadFloats(h.hidden, h.layers.map((l) => l.outDim));
  if (h.payload.floats !== expected) throw new Error(`the payload is declared as ${h.payload.floats} floats but the layers need ${expected}`);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function shortHash(hash: string): string {
  return hash.length > 12 ? hash.slice(0, 12) : hash;
}
