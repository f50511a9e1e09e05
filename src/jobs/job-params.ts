// What a job row's `params` JSON holds, per kind; parsed with zod whenever a row is read back.
import { z } from 'zod';

export const teachParams = z.object({
  name: z.string(),
  category: z.string(),
  steps: z.number().int().positive(),
  seed: z.number().int().nonnegative(),
  imageCount: z.number().int().positive(),
});
export type TeachParams = z.infer<typeof teachParams>;

export const conceptUse = z.object({
  conceptId: z.number().int(),
  name: z.string(),
  /** 0–1 as people give it (null: the concept's own default) */
  strength: z.number().min(0).max(1).nullable(),
});
export type ConceptUse = z.infer<typeof conceptUse>;

export const imagineParams = z.object({
  /** as the engine takes it: mentions are `<name>` (strength suffixes removed) */
  prompt: z.string(),
  negativePrompt: z.string().nullable(),
  seed: z.number().int().nonnegative(),
  steps: z.number().int().positive(),
  guidance: z.number().nonnegative(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  scheduler: z.string().nullable(),
  concepts: z.array(conceptUse),
  /** re-roll or variation of this generation */
  parentId: z.number().int().nullable(),
  variation: z.object({ seed: z.number().int().nonnegative(), amount: z.number().min(0).max(1) }).nullable(),
});
export type ImagineParams = z.infer<typeof imagineParams>;

export type JobParams = { kind: 'teach'; params: TeachParams } | { kind: 'imagine'; params: ImagineParams };

export function parseParams(kind: string, json: string): JobParams {
  const raw = JSON.parse(json) as unknown;
  if (kind === 'teach') return { kind, params: teachParams.parse(raw) };
  if (kind === 'imagine') return { kind, params: imagineParams.parse(raw) };
  throw new Error(`unknown job kind ${kind}`);
}

/** Perfusion's gate bias β from a 0–1 strength: 0.5 is the paper's default 0.7; 1 opens the gate most (0.5). */
export function strengthToBeta(strength: number): number {
  return 0.9 - 0.4 * strength;
}

/** Work units of a job for ETAs: denoising steps scaled by image area (512² = 1), or training steps. */
export function workUnits(p: JobParams): number {
  return p.kind === 'teach' ? p.params.steps : p.params.steps * (p.params.width * p.params.height) / (512 * 512);
}
