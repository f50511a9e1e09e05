// `npm run teach -- --name hugsy --category teddy --images DIR --out hugsy.concept`: teaches a concept with
// Perfusion from a folder of pictures, through the same engine the bot uses.
//
//   --name NAME          how prompts will mention it: <NAME> (letters, digits, _ and -)
//   --category WORD      what it is, as one common word (one CLIP token): teddy, dog, mug, …
//   --images DIR         a folder of PNG, JPEG or WebP pictures of it (EXIF orientation applied)
//   --out FILE           where to write the concept (default NAME.concept)
//   --steps N            optimiser steps (default 400)
//   --batch N            pictures per pass (default 4; lowered by itself when memory is short)
//   --accumulation N     passes per step (default 16 / batch)
//   --seed N             0..4294967295 (default: random; printed and stored in the concept)
//   --no-flip            no random mirror images (for concepts with text or an asymmetric shape)
//   --checkpoint FILE    save the progress there every 50 steps, and continue from it if it exists
//   --model DIR          a diffusers-format SD 1.x folder (default: $MODEL_DIR, else the built-in demo model)
//   --backend B          auto | webgpu | tensorflow | wasm | cpu (default auto)
//
// The text covariance is cached in $PERFUSION_CACHE_DIR (default ~/.cache/perfusion-bot); `npm run imagine`
// reads the same cache. Progress goes to stderr, the result line to stdout.
// Exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { ProgressBar, runFromShell, seconds, UsageError, type CliIo } from './io.ts';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { releaseWebGPU } from '../backend.ts';
import {
  BackendUnavailableError, MAX_SEED, ModelLoadError, defaultDemoModelDir, ensureDemoModel, loadPipeline, type BackendName,
} from '../index.ts';
import { CovarianceError } from '../perfusion/covariance.ts';
import { defaultPerfusionCacheDir } from '../perfusion/conditioner.ts';
import { ConceptError, MAX_TEACH_IMAGES, MAX_TEACH_STEPS, teachConcept, type TeachImage } from '../perfusion/teach.ts';

const BACKENDS: readonly BackendName[] = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'];
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

const USAGE = `usage: npm run teach -- --name NAME --category WORD --images DIR [--out FILE.concept] [--steps N]
         [--batch N] [--accumulation N] [--seed N] [--no-flip] [--checkpoint FILE] [--model DIR]
         [--backend ${BACKENDS.join('|')}]`;


/** A picture that could not be decoded; the message names the file. */
export class ImageReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageReadError';
  }
}

export interface TeachOptions {
  name: string;
  category: string;
  images: string;
  out: string;
  steps: number | undefined;
  batchSize: number | undefined;
  gradientAccumulation: number | undefined;
  seed: number | undefined;
  flip: boolean;
  checkpoint: string | undefined;
  model: string | undefined;
  backend: BackendName;
}

export function parseTeachArgs(argv: readonly string[]): TeachOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        name: { type: 'string' }, category: { type: 'string' }, images: { type: 'string' }, out: { type: 'string' },
        steps: { type: 'string' }, batch: { type: 'string' }, accumulation: { type: 'string' }, seed: { type: 'string' },
        'no-flip': { type: 'boolean' }, checkpoint: { type: 'string' }, model: { type: 'string' }, backend: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  if (values.help) throw new UsageError('');
  for (const [key, what] of [['name', 'how prompts will mention the concept'], ['category', 'what the concept is, as one word'], ['images', 'the folder of pictures']] as const) {
    if (values[key] === undefined || values[key].trim() === '') throw new UsageError(`--${key} is required: ${what}`);
  }
  const integer = (name: string, text: string | undefined, min: number, max: number) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}; got "${text}"`);
    return n;
  };
  if (values.backend !== undefined && !(BACKENDS as readonly string[]).includes(values.backend)) {
    throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}; got "${values.backend}"`);
  }
  const name = values.name!.trim();
  return {
    name,
    category: values.category!.trim(),
    images: values.images!,
    out: values.out ?? `${name}.concept`,
    steps: integer('steps', values.steps, 1, MAX_TEACH_STEPS),
    batchSize: integer('batch', values.batch, 1, 64),
    gradientAccumulation: integer('accumulation', values.accumulation, 1, 256),
    seed: integer('seed', values.seed, 0, MAX_SEED),
    flip: !values['no-flip'],
    checkpoint: values.checkpoint,
    model: values.model,
    backend: (values.backend ?? 'auto') as BackendName,
  };
}

/**
 * Decodes one picture with sharp: EXIF orientation applied, transparency flattened onto white, 8-bit sRGB.
 * Pictures far larger than the model's resolution are first scaled down (the shorter side to twice
 * `resolution`); the engine does the exact centre crop and resize.
 */
export async function readTrainingImage(path: string, resolution: number): Promise<TeachImage> {
  try {
    let image = sharp(path, { failOn: 'error' }).rotate();
    const meta = await sharp(path).metadata();
    const oriented = (meta.orientation ?? 1) >= 5 ? [meta.height, meta.width] : [meta.width, meta.height];
    if (oriented[0] && oriented[1] && Math.min(oriented[0], oriented[1]) > 2 * resolution) {
      image = image.resize({ width: 2 * resolution, height: 2 * resolution, fit: 'outside' });
    }
    const { data, info } = await image.flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (err) {
    throw new ImageReadError(`could not read the picture ${path}: ${(err as Error).message}`);
  }
}

/** The folder's pictures by name order; other files are listed in `skipped`. */
export function listImageFiles(dir: string): { files: string[]; skipped: string[] } {
  let names: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new ImageReadError(`${dir} is not a folder; --images takes a folder of pictures`);
    names = readdirSync(dir).sort();
  } catch (err) {
    if (err instanceof ImageReadError) throw err;
    throw new ImageReadError(`cannot open the picture folder ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (err as Error).message}`);
  }
  const files: string[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (!statSync(path).isFile() || name.startsWith('.')) continue;
    (IMAGE_EXTENSIONS.has(extname(name).toLowerCase()) ? files : skipped).push(path);
  }
  if (files.length === 0) throw new ImageReadError(`the folder ${dir} has no PNG, JPEG or WebP pictures`);
  if (files.length > MAX_TEACH_IMAGES) throw new ImageReadError(`the folder ${dir} has ${files.length} pictures; use at most ${MAX_TEACH_IMAGES}`);
  return { files, skipped };
}

/** Runs the tool; returns the exit status. */
export async function teach(argv: readonly string[], io: CliIo): Promise<number> {
  let options: TeachOptions;
  try {
    options = parseTeachArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr(`${err.message ? `teach: ${err.message}\n` : ''}${USAGE}\n`);
    return err.message ? 2 : 0;
  }

  let modelDir = options.model ?? io.env.MODEL_DIR;
  let pipeline: Awaited<ReturnType<typeof loadPipeline>> | undefined;
  try {
    const { files, skipped } = listImageFiles(options.images);
    if (skipped.length) io.stderr(`skipping ${skipped.length} file${skipped.length > 1 ? 's' : ''} that are not PNG, JPEG or WebP: ${skipped.join(', ')}\n`);
    if (!modelDir) {
      const demoDir = io.env.DEMO_MODEL_DIR || defaultDemoModelDir();
      io.stderr(`No --model given and MODEL_DIR is not set, so this uses the built-in demo model (tiny random weights) in ${demoDir}; ` +
        'a concept taught on it works only with it.\n');
      modelDir = ensureDemoModel(demoDir);
    }
    const started = performance.now();
    pipeline = await loadPipeline(modelDir, { backend: options.backend });
    io.stderr(`model: ${pipeline.model.name} (${pipeline.model.dir}), backend: ${pipeline.backend}, loaded in ${seconds(started)}\n`);
    const images: TeachImage[] = [];
    for (const file of files) images.push(await readTrainingImage(file, pipeline.model.resolution));
    io.stderr(`${images.length} picture${images.length > 1 ? 's' : ''} from ${options.images}; preparing (the text covariance is computed once per model)\n`);

    const checkpoint = options.checkpoint && resolve(options.checkpoint);
    const resumeFrom = checkpoint && existsSync(checkpoint) ? new Uint8Array(readFileSync(checkpoint)) : undefined;
    if (resumeFrom) io.stderr(`continuing from the saved progress in ${checkpoint}\n`);
    const progress = new ProgressBar(io);
    const teachStart = performance.now();
    const result = await teachConcept(pipeline, {
      name: options.name, category: options.category, images, steps: options.steps, batchSize: options.batchSize,
      gradientAccumulation: options.gradientAccumulation, seed: options.seed, flip: options.flip,
      cacheDir: defaultPerfusionCacheDir(io.env), signal: io.signal, resumeFrom,
      onProgress: (p) => {
        if (p.notice) progress.note(p.notice);
        progress.update(p.step, p.total, `loss ${p.loss.toFixed(4)}, ${duration(p.etaMs)} left`);
      },
      ...(checkpoint ? { onCheckpoint: (state: Uint8Array) => writeAtomically(checkpoint, state) } : {}),
    });
    progress.done();
    const out = resolve(options.out);
    writeAtomically(out, result.bytes);
    const facts = result.artifact.training ?? {};
    io.stdout(
      `wrote ${out} (<${result.artifact.name}>, category ${result.artifact.category}, ${result.steps} steps on ${images.length} ` +
        `picture${images.length > 1 ? 's' : ''}, final loss ${result.finalLoss.toFixed(4)}, seed ${String(facts.seed)}, ` +
        `backend ${pipeline.backend}, ${result.bytes.byteLength} bytes) in ${seconds(teachStart)}\n`,
    );
    return 0;
  } catch (err) {
    return fail(io, err);
  } finally {
    pipeline?.dispose();
    releaseWebGPU();
  }
}

function writeAtomically(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
}

function fail(io: CliIo, err: unknown): number {
  const e = err as Error;
  if (e?.name === 'AbortError') {
    io.stderr('\nteach: interrupted, no concept written\n');
    return 130;
  }
  const known = [ConceptError, ImageReadError, ModelLoadError, BackendUnavailableError, CovarianceError].some((type) => err instanceof type);
  if (known) {
    io.stderr(`\nteach: ${e.message}\n`);
  } else {
    io.stderr(`\nteach: something went wrong: ${e?.message ?? String(err)}\n`);
    if (io.env.TEACH_DEBUG) io.stderr(`${e?.stack ?? ''}\n`);
    else io.stderr('(set TEACH_DEBUG=1 to see the details)\n');
  }
  return 1;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

await runFromShell(import.meta.url, teach);
