// Training images as the VAE takes them (perfusion-spec.md §6.2): centre-cropped to a square, resized to the
// model's resolution, as NHWC float values in [-1, 1]; and the optional soft masks of the concept, cropped the
// same way and resized to the latent grid. Computed in plain JavaScript, so the result is the same on every
// backend. Resizing is Pillow's "bilinear" (a triangle filter whose support widens with the reduction factor,
// so large photos are averaged instead of aliased).

/** An 8-bit image: HWC, `channels` values per pixel. */
export interface RasterImage {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/** The largest centred square of the image, as [left, top, side]. */
export function centreSquare(width: number, height: number): [number, number, number] {
  const side = Math.min(width, height);
  return [Math.floor((width - side) / 2), Math.floor((height - side) / 2), side];
}

/** Per output position, the first input index and the normalised weights of the triangle filter. */
interface Taps {
  first: Int32Array;
  count: number;
  weights: Float64Array;
}

/** Pillow's resampling coefficients (Resample.c, precompute_coeffs) for `inSize` → `outSize`, triangle filter. */
function triangleTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const count = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const weights = new Float64Array(outSize * count);
  for (let o = 0; o < outSize; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(centre - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(centre + support + 0.5));
    first[o] = lo;
    let total = 0;
    for (let i = lo; i < hi; i++) {
      const w = Math.max(0, 1 - Math.abs((i - centre + 0.5) / filterScale));
      weights[o * count + i - lo] = w;
      total += w;
    }
    if (total > 0) for (let k = 0; k < hi - lo; k++) weights[o * count + k]! /= total;
  }
  return { first, count, weights };
}

/**
 * The centred square of `image` resized to side × side, values divided by 255 (so in [0, 1]) as float32 HWC.
 * `flip` mirrors it left to right.
 */
export function squareResize(image: RasterImage, side: number, flip = false): Float32Array {
  const { width, height, channels, data } = image;
  const [left, top, square] = centreSquare(width, height);
  const taps = triangleTaps(square, side);
  // horizontal pass over the square's rows, then vertical
  const rows = new Float64Array(square * side * channels);
  for (let y = 0; y < square; y++) {
    const rowStart = ((top + y) * width + left) * channels;
    for (let x = 0; x < side; x++) {
      const f = taps.first[x]!;
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let k = 0; k < taps.count; k++) {
          const w = taps.weights[x * taps.count + k]!;
          if (w !== 0) s += w * data[rowStart + (f + k) * channels + c]!;
        }
        rows[(y * side + x) * channels + c] = s;
      }
    }
  }
  const out = new Float32Array(side * side * channels);
  for (let y = 0; y < side; y++) {
    const f = taps.first[y]!;
    for (let x = 0; x < side; x++) {
      const target = (y * side + (flip ? side - 1 - x : x)) * channels;
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let k = 0; k < taps.count; k++) {
          const w = taps.weights[y * taps.count + k]!;
          if (w !== 0) s += w * rows[((f + k) * side + x) * channels + c]!;
        }
        out[target + c] = s / 255;
      }
    }
  }
  return out;
}

/** The image as the VAE encoder's input: NHWC values in [-1, 1] of one side × side item. */
export function vaeInput(image: RasterImage, side: number, flip: boolean): Float32Array {
  const pixels = squareResize(image, side, flip);
  for (let i = 0; i < pixels.length; i++) pixels[i] = pixels[i]! * 2 - 1;
  return pixels;
}

/** A soft mask on the latent grid (side × side), divided by its maximum; null when the mask is all zero. */
export function latentMask(mask: RasterImage, side: number, flip: boolean): Float32Array | null {
  const values = squareResize(mask, side, flip);
  let max = 0;
  for (const v of values) if (v > max) max = v;
  if (!(max > 0)) return null;
  for (let i = 0; i < values.length; i++) values[i] = values[i]! / max;
  return values;
}
