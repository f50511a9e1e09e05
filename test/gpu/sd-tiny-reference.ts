// Shared by the engine tests: the sd-tiny-a reference tensors made with diffusers (test/fixtures/README.md).
import { SafetensorsFile } from '../../gpu/weights/safetensors.ts';

export const fixtureModelDir = new URL('../fixtures/sd-tiny-a/model', import.meta.url).pathname;
const referencePath = new URL('../fixtures/sd-tiny-a/reference.safetensors', import.meta.url).pathname;

let file: SafetensorsFile | null = null;

/** A reference tensor as float32 (PyTorch layout) with its shape. */
export function reference(name: string): { data: Float32Array; shape: readonly number[] } {
  file ??= SafetensorsFile.open(referencePath);
  return { data: file.readFloat32(name), shape: file.info(name).shape };
}

/** ‖out − ref‖ / ‖ref‖ */
export function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} vs reference ${ref.length}`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    diff += (out[i]! - ref[i]!) ** 2;
    norm += ref[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}
