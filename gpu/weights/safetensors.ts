// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian u64 header length N, N bytes of JSON, then the raw little-endian tensor bytes.
//
// Tensors are read one at a time straight from the file descriptor, so files larger than 2 GiB work
// (fs.readFile refuses those) and an fp16 file is never held in memory twice: each tensor is widened to
// float32 as it is read.
import { closeSync, fstatSync, openSync, readSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { basename } from 'node:path';

export type SafetensorsDtype =
  | 'BOOL' | 'U8' | 'I8' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = {
  BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};
const FLOAT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F16', 'BF16', 'F32', 'F64']);
/** The reference parser refuses headers over 100 MB; so do we (a corrupt length would otherwise allocate GBs). */
const MAX_HEADER_BYTES = 100_000_000;

if (endianness() !== 'LE') throw new Error('perfusion-bot reads safetensors files on little-endian hosts only');

export class SafetensorsError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${basename(file)}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** absolute byte offsets in the file, [begin, end) */
  readonly begin: number;
  readonly end: number;
}

export class SafetensorsFile {
  /** bytes per read call: readSync reads at most 2 GiB at once (tests lower it to exercise the loop) */
  static readChunkBytes = 1 << 30;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly tensors: Map<string, TensorInfo>;
  private fd: number | null;

  private constructor(readonly path: string, fd: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens a file and validates its header; tensor data is read lazily. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SafetensorsError(path, code === 'ENOENT' ? `file not found: ${path}` : `cannot open ${path} (${code})`);
    }
    try {
      const { tensors, metadata } = parseHeader(path, fd);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(this.path, `no tensor named "${name}"`);
    return info;
  }

  /** The tensor's bytes as stored (little-endian), in a fresh 8-byte-aligned buffer. */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    const length = info.end - info.begin;
    const bytes = new Uint8Array(new ArrayBuffer(length));
    let done = 0;
    while (done < length) {
      const chunk = Math.min(length - done, SafetensorsFile.readChunkBytes);
      const n = readSync(this.requireFd(), bytes, done, chunk, info.begin + done);
      if (n <= 0) throw new SafetensorsError(this.path, `unexpected end of file while reading "${name}"`);
      done += n;
    }
    return bytes;
  }

  /** Reads a floating-point tensor widened to float32 (F32, F16, BF16 and F64 are accepted). */
  readFloat32(name: string): Float32Array {
    const info = this.info(name);
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new SafetensorsError(this.path, `tensor "${name}" has dtype ${info.dtype}; expected a floating-point dtype (F32, F16, BF16)`);
    }
    const bytes = this.readBytes(name);
    switch (info.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
      case 'F16':
        return float16ToFloat32(new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2));
      case 'BF16':
        return bfloat16ToFloat32(new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2));
      default:
        return Float32Array.from(new Float64Array(bytes.buffer, 0, bytes.byteLength / 8));
    }
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private requireFd(): number {
    if (this.fd === null) throw new SafetensorsError(this.path, 'file is closed');
    return this.fd;
  }
}

function parseHeader(path: string, fd: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) throw new SafetensorsError(path, `not a safetensors file (only ${fileSize} bytes)`);
  const lengthBytes = Buffer.alloc(8);
  readSync(fd, lengthBytes, 0, 8, 0);
  const headerLength = Number(lengthBytes.readBigUInt64LE(0));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new SafetensorsError(path, `corrupt header: it claims ${headerLength} bytes of JSON in a ${fileSize}-byte file`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  readSync(fd, headerBytes, 0, headerLength, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch {
    throw new SafetensorsError(path, 'corrupt header: it is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(path, 'corrupt header: expected a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(path, entry);
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) throw new SafetensorsError(path, `corrupt header entry for "${name}"`);
    if (typeof e.dtype !== 'string' || !(e.dtype in BYTES_PER_ELEMENT)) {
      throw new SafetensorsError(path, `tensor "${name}" has unsupported dtype ${JSON.stringify(e.dtype)}`);
    }
    const dtype = e.dtype as SafetensorsDtype;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(path, `tensor "${name}" has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const offsets = e.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(path, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype];
    if (end < begin || end - begin !== expected) {
      throw new SafetensorsError(path, `tensor "${name}" spans ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
    }
    if (end > dataLength) {
      throw new SafetensorsError(path, `tensor "${name}" ends at byte ${end} of a ${dataLength}-byte data section (truncated file?)`);
    }
    tensors.set(name, { name, dtype, shape, begin: dataStart + begin, end: dataStart + end });
  }
  return { tensors, metadata };
}

function parseMetadata(path: string, entry: unknown): Record<string, string> {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new SafetensorsError(path, 'corrupt header: __metadata__ must be an object of strings');
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') throw new SafetensorsError(path, `corrupt header: __metadata__.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// half-precision conversions

let f16Table: Float32Array | null = null;

/** IEEE 754 binary16 → binary32, via a 65,536-entry table (subnormals, infinities and NaN included). */
export function float16ToFloat32(src: Uint16Array): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const mantissa = h & 0x3ff;
      let value: number;
      if (exponent === 0) value = mantissa * 2 ** -24; // subnormal (or zero)
      else if (exponent === 31) value = mantissa ? NaN : Infinity;
      else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
      f16Table[h] = sign * value;
    }
  }
  const table = f16Table;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return out;
}

/** bfloat16 is the upper half of a binary32. */
export function bfloat16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/** binary32 → binary16 with round-to-nearest-even (used when writing F16 files). */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    let e = exp - 127 + 15;
    if (e >= 31) { out[i] = sign | 0x7c00; continue; }
    if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - e;
      let half = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      const midpoint = 1 << (shift - 1);
      if (rest > midpoint || (rest === midpoint && (half & 1))) half++;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++;
    out[i] = sign | half;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// writing

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';
  shape: readonly number[];
  /** float data for F32/F16/BF16; integer data for I64/I32 */
  data: Float32Array | ArrayLike<number>;
}

/** Serialises tensors in the safetensors layout (keys sorted, data 8-byte aligned). */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const parts: Uint8Array[] = [];
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw new Error(`tensor "${name}": ${t.data.length} values for shape ${JSON.stringify(t.shape)}`);
    let bytes: Uint8Array;
    switch (t.dtype) {
      case 'F32': bytes = new Uint8Array(Float32Array.from(t.data).buffer); break;
      case 'F16': bytes = new Uint8Array(float32ToFloat16(Float32Array.from(t.data)).buffer); break;
      case 'BF16': {
        const u32 = new Uint32Array(Float32Array.from(t.data).buffer);
        const u16 = new Uint16Array(u32.length);
        for (let i = 0; i < u32.length; i++) u16[i] = u32[i]! >>> 16;
        bytes = new Uint8Array(u16.buffer);
        break;
      }
      case 'I64': bytes = new Uint8Array(BigInt64Array.from(Array.from(t.data, (v) => BigInt(Math.round(v)))).buffer); break;
      case 'I32': bytes = new Uint8Array(Int32Array.from(t.data).buffer); break;
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const p of parts) { out.set(p, at); at += p.byteLength; }
  return out;
}

export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}
