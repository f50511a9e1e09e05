// Checks every uploaded training image by decoding it (never trusting its name or claimed type):
// a still image of a supported format, within the byte and pixel limits, of a usable size. The accepted
// image is turned upright (EXIF orientation), downscaled to at most MAX_STORED_SIDE and stored as PNG.
import { createHash } from 'node:crypto';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import type { Attachment } from '../chat/types.ts';
import { UserError } from '../errors.ts';

export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
/** decoded pixels; a small file may decode to a huge image (a decompression bomb) */
export const MAX_IMAGE_PIXELS = 40_000_000;
export const MIN_IMAGE_SIDE = 128;
export const MAX_ASPECT = 4;
export const MAX_STORED_SIDE = 1024;
export const MIN_IMAGES = 1;
export const MAX_IMAGES = 10;
export const RECOMMENDED_IMAGES = 3;
const FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'avif', 'heif', 'tiff']);

export interface CheckedImage {
  filename: string;
  png: Uint8Array<ArrayBuffer>;
  width: number;
  height: number;
  sha256: string;
}

export class ImageError extends UserError {
  constructor(message: string) { super(message, 400); this.name = 'ImageError'; }
}

function mb(n: number): string { return `${(n / 1024 / 1024).toFixed(1)} MB`; }

/** A display name that cannot break the message it is quoted in. */
export function safeName(name: string, index: number): string {
  const clean = name.replace(/[^\p{L}\p{N} ._()-]/gu, '').trim().slice(0, 60);
  return clean || `image ${index + 1}`;
}

export async function checkImage(att: Attachment, index: number): Promise<CheckedImage> {
  const name = safeName(att.filename, index);
  if (att.bytes.byteLength === 0) throw new ImageError(`"${name}" is empty. Send the image file itself.`);
  if (att.bytes.byteLength > MAX_IMAGE_BYTES) {
    throw new ImageError(`"${name}" is ${mb(att.bytes.byteLength)}; each image may be at most ${mb(MAX_IMAGE_BYTES)}. Send a smaller or more compressed copy.`);
  }
  let meta: Metadata;
  try {
    meta = await sharp(att.bytes, { limitInputPixels: false, pages: -1 }).metadata();
  } catch {
    throw new ImageError(`"${name}" is not an image I can read. Send a PNG, JPEG or WebP photo.`);
  }
  if (!meta.format || !FORMATS.has(meta.format)) {
    throw new ImageError(`"${name}" is a ${meta.format ?? 'unknown'} file, not a photo I can use. Send a PNG, JPEG or WebP image.`);
  }
  if ((meta.pages ?? 1) > 1) {
    throw new ImageError(`"${name}" is animated (${meta.pages} frames). Send a still image: one frame of it, as PNG or JPEG.`);
  }
  const w = meta.width ?? 0, h = meta.height ?? 0;
  if (w * h > MAX_IMAGE_PIXELS) {
    throw new ImageError(`"${name}" is ${w}×${h} pixels, too many to process (at most ${MAX_IMAGE_PIXELS / 1e6} megapixels). Send a smaller version.`);
  }
  // upright dimensions (orientations 5–8 swap width and height)
  const [uw, uh] = (meta.orientation ?? 1) >= 5 ? [h, w] : [w, h];
  if (Math.min(uw, uh) < MIN_IMAGE_SIDE) {
    throw new ImageError(`"${name}" is only ${uw}×${uh} pixels; images must be at least ${MIN_IMAGE_SIDE}×${MIN_IMAGE_SIDE}. Send a larger photo.`);
  }
  if (Math.max(uw, uh) / Math.min(uw, uh) > MAX_ASPECT) {
    throw new ImageError(`"${name}" is ${uw}×${uh}, too long and thin (more than ${MAX_ASPECT}:1). Crop it closer to the subject.`);
  }
  let out: { data: Buffer; info: OutputInfo };
  try {
    // full decode (a truncated or corrupt file fails here), EXIF orientation applied, metadata dropped
    out = await sharp(att.bytes, { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'error' })
      .rotate()
      .resize(MAX_STORED_SIDE, MAX_STORED_SIDE, { fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .png()
      .toBuffer({ resolveWithObject: true });
  } catch {
    throw new ImageError(`"${name}" is damaged or incomplete and cannot be decoded. Send the original file again.`);
  }
  const png = new Uint8Array(out.data.buffer.slice(out.data.byteOffset, out.data.byteOffset + out.data.byteLength)) as Uint8Array<ArrayBuffer>;
  return { filename: name, png, width: out.info.width, height: out.info.height, sha256: createHash('sha256').update(png).digest('hex') };
}

/** Checks a teach upload: 1–10 images, each usable; the first problem is reported. */
export async function checkTeachImages(atts: readonly Attachment[]): Promise<CheckedImage[]> {
  if (atts.length < MIN_IMAGES) throw new ImageError(`Attach at least one image of the concept (${RECOMMENDED_IMAGES}–${MAX_IMAGES} work best).`);
  if (atts.length > MAX_IMAGES) throw new ImageError(`You attached ${atts.length} images; the limit is ${MAX_IMAGES}. Pick the ${MAX_IMAGES} that show the concept best.`);
  const out: CheckedImage[] = [];
  for (let i = 0; i < atts.length; i++) out.push(await checkImage(atts[i]!, i));
  return out;
}
