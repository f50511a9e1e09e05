// PNG encoder (RFC 2083 / PNG spec 1.2) on node:zlib: 8-bit RGB or RGBA, per-row adaptive filtering
// (the minimum-sum-of-absolute-differences heuristic libpng uses), optional tEXt chunks for generation
// parameters. No native dependencies.
import { deflateSync } from 'node:zlib';

export interface RgbImage {
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA) */
  channels: 3 | 4;
  /** row-major, `channels` bytes per pixel */
  data: Uint8Array;
}

export interface PngOptions {
  /** Latin-1 keyword → text pairs written as tEXt chunks (e.g. "parameters" with the prompt and seed) */
  text?: Record<string, string>;
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export function encodePng(image: RgbImage, options: PngOptions = {}): Uint8Array {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`PNG: image size ${width}×${height} is not a positive whole number of pixels`);
  }
  if (data.length !== width * height * channels) {
    throw new RangeError(`PNG: ${data.length} bytes for a ${width}×${height} image with ${channels} channels (needs ${width * height * channels})`);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bit depth
  header[9] = channels === 3 ? 2 : 6; // colour type: truecolour (with alpha)
  // compression 0, filter method 0, no interlace
  const chunks = [chunk('IHDR', header)];
  for (const [keyword, text] of Object.entries(options.text ?? {})) chunks.push(chunk('tEXt', textChunk(keyword, text)));
  chunks.push(chunk('IDAT', deflateSync(filterRows(data, width, height, channels), { level: 9 })));
  chunks.push(chunk('IEND', new Uint8Array(0)));
  return concat([SIGNATURE, ...chunks]);
}

/** Pixels in [0, 1] (NHWC [h, w, c] float) → bytes, rounded like diffusers' `(x * 255).round()`. */
export function floatToBytes(pixels: Float32Array): Uint8Array {
  const out = new Uint8Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const v = Math.round(pixels[i]! * 255);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

/** Each row prefixed by the filter type that makes it cheapest to compress. */
function filterRows(data: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp;
  const out = new Uint8Array(height * (stride + 1));
  const candidate = new Uint8Array(stride);
  const best = new Uint8Array(stride);
  const zero = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : zero;
    let bestType = 0;
    let bestCost = Infinity;
    for (let type = 0; type <= 4; type++) {
      const cost = applyFilter(type, row, prev, bpp, candidate);
      if (cost < bestCost) {
        bestCost = cost;
        bestType = type;
        best.set(candidate);
      }
    }
    out[y * (stride + 1)] = bestType;
    out.set(best, y * (stride + 1) + 1);
  }
  return out;
}

/** Writes the filtered row into `out` and returns the sum of the bytes taken as signed values. */
function applyFilter(type: number, row: Uint8Array, prev: Uint8Array, bpp: number, out: Uint8Array): number {
  let cost = 0;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp]! : 0;
    const b = prev[i]!;
    const c = i >= bpp ? prev[i - bpp]! : 0;
    let predictor: number;
    switch (type) {
      case 0: predictor = 0; break;
      case 1: predictor = a; break;
      case 2: predictor = b; break;
      case 3: predictor = (a + b) >> 1; break;
      default: predictor = paeth(a, b, c);
    }
    const v = (row[i]! - predictor) & 0xff;
    out[i] = v;
    cost += v < 128 ? v : 256 - v;
  }
  return cost;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

function textChunk(keyword: string, text: string): Uint8Array {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) || /^ | $|  /.test(keyword)) {
    throw new RangeError(`PNG: tEXt keyword ${JSON.stringify(keyword)} must be 1–79 Latin-1 characters without leading, trailing or double spaces`);
  }
  // tEXt is Latin-1; characters outside it are replaced so the chunk stays valid
  const latin1 = (s: string) => Uint8Array.from(s, (ch) => { const code = ch.codePointAt(0)!; return code <= 0xff ? code : 0x3f; });
  return concat([latin1(keyword), Uint8Array.of(0), latin1(text)]);
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(body, 8);
  view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

let crcTable: Uint32Array | null = null;

export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
