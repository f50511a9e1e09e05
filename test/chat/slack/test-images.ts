// Small real images (encoded by sharp) for the Slack tests: what users share and what the bot uploads.
import sharp from 'sharp';

/** A solid-colour PNG of the given size. */
export async function pngImage(width = 16, height = 16, rgb: [number, number, number] = [200, 120, 40]): Promise<Uint8Array> {
  const buf = await sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
  return new Uint8Array(buf);
}

export async function jpegImage(width = 16, height = 16, rgb: [number, number, number] = [40, 120, 200]): Promise<Uint8Array> {
  const buf = await sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).jpeg().toBuffer();
  return new Uint8Array(buf);
}

/** A PNG whose random pixels do not compress, so its size is about width*height*3 bytes. */
export async function noisyPng(width: number, height: number): Promise<Uint8Array> {
  const pixels = new Uint8Array(width * height * 3);
  let x = 12345;
  for (let i = 0; i < pixels.length; i++) { x = (x * 1103515245 + 12345) >>> 0; pixels[i] = x >>> 24; }
  const buf = await sharp(pixels, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
  return new Uint8Array(buf);
}
