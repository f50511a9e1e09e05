// `npm run imagine -- --prompt "…"`: one image from the command line, through the same engine the bot uses.
//
//   --prompt TEXT      what to draw (required)
//   --negative TEXT    what to steer away from
//   --model DIR        a diffusers-format SD 1.x folder (default: $MODEL_DIR, else the built-in demo model)
//   --steps N          sampling steps (default 50)
//   --guidance G       classifier-free guidance scale (default 7.5; 1 or less turns it off)
//   --scheduler S      pndm | ddim | euler | dpmpp-2m (default: what the model's scheduler config names)
//   --seed N           0..4294967295 (default: random; printed so the image can be made again)
//   --size WxH         image size in pixels, multiples of 8 (default: the model's resolution)
//   --backend B        auto | webgpu | tensorflow | wasm | cpu (default auto)
//   --out FILE         where to write the PNG (default out/imagine-<seed>.png)
//   --concept FILE     a taught Perfusion concept (npm run teach), mentioned in the prompt as <name>; repeatable
//   --strength β       the concepts' gate bias β (default: each concept's own, 0.7; lower draws the concept more strongly)
//
// Progress goes to stderr, the result line to stdout. Exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ProgressBar, runFromShell, seconds, UsageError, type CliIo } from './io.ts';
import { parseArgs } from 'node:util';
import { releaseWebGPU } from '../backend.ts';
import {
  BackendUnavailableError, DEFAULT_GUIDANCE, DEFAULT_STEPS, GenerateRequestError, MAX_SEED, MAX_STEPS, ModelLoadError,
  SCHEDULER_NAMES, SchedulerError, defaultDemoModelDir, ensureDemoModel, loadPipeline,
  type BackendName, type GenerateRequest, type SchedulerName,
} from '../index.ts';
import {
  ConceptCompatibilityError, ConceptFormatError, ConceptPromptError, createPerfusionConditioner, defaultPerfusionCacheDir, parseConcept,
  UnknownConceptError,
} from '../perfusion/index.ts';
import { truncationNote } from '../text/truncation.ts';

const BACKENDS: readonly BackendName[] = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

const USAGE = `usage: npm run imagine -- --prompt "a photo of a dog" [--negative TEXT] [--model DIR] [--steps N]
         [--guidance G] [--scheduler ${SCHEDULER_NAMES.join('|')}] [--seed N] [--size WxH]
         [--backend ${BACKENDS.join('|')}] [--out FILE.png] [--concept FILE.concept ...] [--strength B]`;


export interface ImagineOptions {
  request: GenerateRequest & { seed: number | undefined };
  model: string | undefined;
  backend: BackendName;
  out: string | undefined;
  /** concept files, and the β that overrides theirs */
  concepts: string[];
  strength: number | undefined;
}

/** Parses and checks the command line; problems are UsageErrors worded for the person typing. */
export function parseImagineArgs(argv: readonly string[]): ImagineOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        prompt: { type: 'string' }, negative: { type: 'string' }, model: { type: 'string' }, steps: { type: 'string' },
        guidance: { type: 'string' }, scheduler: { type: 'string' }, seed: { type: 'string' }, size: { type: 'string' },
        backend: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
        concept: { type: 'string', multiple: true }, strength: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    // node's messages name the option ("Unknown option '--foo'", "Option '--steps <value>' argument missing")
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  if (values.help) throw new UsageError('');
  if (values.prompt === undefined || values.prompt.trim() === '') throw new UsageError('--prompt is required: say what to draw');
  const integer = (name: string, text: string | undefined, min: number, max: number) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}; got "${text}"`);
    return n;
  };
  let guidance: number | undefined;
  if (values.guidance !== undefined) {
    guidance = Number(values.guidance);
    if (values.guidance.trim() === '' || !Number.isFinite(guidance)) throw new UsageError(`--guidance must be a number such as 7.5; got "${values.guidance}"`);
  }
  if (values.scheduler !== undefined && !(SCHEDULER_NAMES as readonly string[]).includes(values.scheduler)) {
    throw new UsageError(`--scheduler must be one of ${SCHEDULER_NAMES.join(', ')}; got "${values.scheduler}"`);
  }
  if (values.backend !== undefined && !(BACKENDS as readonly string[]).includes(values.backend)) {
    throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}; got "${values.backend}"`);
  }
  let width: number | undefined;
  let height: number | undefined;
  if (values.size !== undefined) {
    const m = /^(\d+)(?:x(\d+))?$/i.exec(values.size.trim());
    if (!m) throw new UsageError(`--size must be WIDTHxHEIGHT in pixels, e.g. 512x512 (or one number for a square); got "${values.size}"`);
    width = Number(m[1]);
    height = Number(m[2] ?? m[1]);
  }
  let strength: number | undefined;
  if (values.strength !== undefined) {
    strength = Number(values.strength);
    if (values.strength.trim() === '' || !Number.isFinite(strength)) throw new UsageError(`--strength must be a number such as 0.7; got "${values.strength}"`);
  }
  return {
    concepts: values.concept ?? [],
    strength,
    request: {
      prompt: values.prompt,
      negativePrompt: values.negative,
      steps: integer('steps', values.steps, 1, MAX_STEPS),
      guidance,
      scheduler: values.scheduler as SchedulerName | undefined,
      seed: integer('seed', values.seed, 0, MAX_SEED),
      width,
      height,
    },
    model: values.model,
    backend: (values.backend ?? 'auto') as BackendName,
    out: values.out,
  };
}

/** Runs the tool; returns the exit status. */
export async function imagine(argv: readonly string[], io: CliIo): Promise<number> {
  let options: ImagineOptions;
  try {
    options = parseImagineArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr(`${err.message ? `imagine: ${err.message}\n` : ''}${USAGE}\n`);
    return err.message ? 2 : 0;
  }

  let modelDir = options.model ?? io.env.MODEL_DIR;
  if (!modelDir) {
    const demoDir = io.env.DEMO_MODEL_DIR || defaultDemoModelDir();
    io.stderr(
      `No --model given and MODEL_DIR is not set, so this uses the built-in demo model (tiny random weights: its pictures are ` +
        `noise-like patterns, not real images) in ${demoDir}.\nFor real images, pass --model or set MODEL_DIR to a ` +
        'diffusers-format Stable Diffusion 1.5 folder.\n',
    );
    try {
      modelDir = ensureDemoModel(demoDir);
    } catch (err) {
      return fail(io, err);
    }
  }

  const started = performance.now();
  let pipeline: Awaited<ReturnType<typeof loadPipeline>> | undefined;
  try {
    const concepts = options.concepts.map((file) => {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(readFileSync(file));
      } catch (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        throw new ConceptFormatError(`cannot read the concept file ${file}: ${missing ? 'it does not exist' : (err as Error).message}`);
      }
      try {
        return { ...parseConcept(bytes), ...(options.strength !== undefined ? { beta: options.strength } : {}) };
      } catch (err) {
        throw new ConceptFormatError(`${file}: ${(err as Error).message}`);
      }
    });
    pipeline = await loadPipeline(modelDir, {
      backend: options.backend,
      ...(concepts.length ? { conceptConditioner: createPerfusionConditioner({ cacheDir: defaultPerfusionCacheDir(io.env) }) } : {}),
    });
    io.stderr(`model: ${pipeline.model.name} (${pipeline.model.dir}), backend: ${pipeline.backend}, loaded in ${seconds(started)}\n`);
    const progress = new ProgressBar(io);
    const genStart = performance.now();
    const result = await pipeline.generate({ ...options.request, ...(concepts.length ? { concepts } : {}), signal: io.signal, onStep: (step, total) => progress.update(step, total, seconds(genStart)) });
    progress.done();
    const out = resolve(options.out ?? `out/imagine-${result.seed}.png`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, result.png);
    for (const t of result.truncated) io.stderr(`imagine: note: ${truncationNote(t)}\n`);
    const r = options.request;
    io.stdout(
      `wrote ${out} (${result.width}×${result.height}, seed ${result.seed}, ${r.scheduler ?? pipeline.model.defaultScheduler}, ` +
        `${r.steps ?? DEFAULT_STEPS} steps, guidance ${r.guidance ?? DEFAULT_GUIDANCE}, backend ${pipeline.backend}) in ${seconds(genStart)}\n`,
    );
    return 0;
  } catch (err) {
    return fail(io, err);
  } finally {
    pipeline?.dispose();
    releaseWebGPU();
  }
}

function fail(io: CliIo, err: unknown): number {
  const e = err as Error;
  if (e?.name === 'AbortError') {
    io.stderr('\nimagine: interrupted, no image written\n');
    return 130;
  }
  const known = [
    ModelLoadError, GenerateRequestError, BackendUnavailableError, SchedulerError, ConceptFormatError, ConceptCompatibilityError,
    UnknownConceptError, ConceptPromptError,
  ].some((type) => err instanceof type);
  if (known) {
    io.stderr(`imagine: ${e.message}\n`);
  } else {
    io.stderr(`imagine: something went wrong: ${e?.message ?? String(err)}\n`);
    if (io.env.IMAGINE_DEBUG) io.stderr(`${e?.stack ?? ''}\n`);
    else io.stderr('(set IMAGINE_DEBUG=1 to see the details)\n');
  }
  return 1;
}

await runFromShell(import.meta.url, imagine);
