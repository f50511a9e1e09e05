// `npm run teach` and `npm run imagine -- --concept`: real pictures decoded with sharp (PNG, JPEG with an EXIF
// orientation, WebP), the tiny fixture model on wasm, clear one-line errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { imagine } from '../../../gpu/cli/imagine.ts';
import type { CliIo } from '../../../gpu/cli/io.ts';
import { readTrainingImage, teach } from '../../../gpu/cli/teach.ts';
import { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import { createPerfusionConditioner, modelCovariance, parseConcept, teachConcept } from '../../../gpu/perfusion/index.ts';
import { discOnStripes, fixturePath } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'perfusion-teach-cli-'));
const cacheDir = join(tmp, 'cache');
const pictures = join(tmp, 'pictures');
const model = fixturePath('sd-tiny-a/model');
let pipe: StableDiffusionPipeline;

function captured(): CliIo & { out: string; err: string } {
  const io = {
    out: '', err: '', env: { PERFUSION_CACHE_DIR: cacheDir, MODEL_DIR: '' }, interactive: false,
    stdout: (t: string) => { io.out += t; },
    stderr: (t: string) => { io.err += t; },
  };
  return io;
}

const raw = (image: { width: number; height: number; rgb: Uint8Array }) =>
  sharp(Buffer.from(image.rgb), { raw: { width: image.width, height: image.height, channels: 3 } });

before(async () => {
  mkdirSync(pictures);
  await raw(discOnStripes(0, 0, 160)).png().toFile(join(pictures, 'a.png'));
  // stored 96 wide, 160 high, shown rotated a quarter turn (EXIF orientation 6): 160 wide, 96 high, red on the left
  const stored = new Uint8Array(96 * 160 * 3).map((_, i) => (Math.floor(i / 3 / 96) < 80 ? [220, 30, 30] : [30, 60, 200])[i % 3]!);
  await raw({ width: 96, height: 160, rgb: stored }).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(join(pictures, 'b.jpg'));
  await raw(discOnStripes(4, -4, 128)).webp({ lossless: true }).toFile(join(pictures, 'c.webp'));
  writeFileSync(join(pictures, 'notes.txt'), 'not a picture');
  pipe = await StableDiffusionPipeline.load(model, { backend: 'wasm' });
  await modelCovariance(pipe, { cacheDir, corpusPrompts: 48 });
});
after(() => {
  pipe?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const teachArgs = ['--name', 'hugsy', '--category', 'teddy', '--images', pictures, '--model', model, '--backend', 'wasm',
  '--steps', '2', '--batch', '1', '--accumulation', '2', '--seed', '3'];

test('pictures are decoded upright, flattened to RGB', async () => {
  const jpeg = await readTrainingImage(join(pictures, 'b.jpg'), 128);
  assert.deepEqual([jpeg.width, jpeg.height], [160, 96]);
  const at = (x: number, y: number) => Array.from(jpeg.rgb.subarray((y * 160 + x) * 3, (y * 160 + x) * 3 + 3));
  const reddish = (c: number[]) => c[0]! > 150 && c[2]! < 100;
  // orientation 6: the stored top rows (red) become the right-hand columns
  assert.ok(reddish(at(150, 48)) && !reddish(at(10, 48)), `right ${at(150, 48)}, left ${at(10, 48)}`);
  const png = await readTrainingImage(join(pictures, 'a.png'), 128);
  assert.deepEqual(Array.from(png.rgb), Array.from(discOnStripes(0, 0, 160).rgb));
  // a large picture is scaled down first, its shorter side to twice the model's resolution
  await raw(discOnStripes(0, 0, 600)).png().toFile(join(tmp, 'large.png'));
  const large = await readTrainingImage(join(tmp, 'large.png'), 128);
  assert.deepEqual([large.width, large.height], [256, 256]);
});

test('npm run teach writes the concept a direct teachConcept call makes, and continues from a checkpoint', async () => {
  const out = join(tmp, 'hugsy.concept');
  const io = captured();
  assert.equal(await teach([...teachArgs, '--out', out], io), 0, io.err);
  assert.match(io.out, new RegExp(`^wrote ${out} \\(<hugsy>, category teddy, 2 steps on 3 pictures, final loss \\d+\\.\\d{4}, seed 3, backend wasm, \\d+ bytes\\) in [\\d.]+ s\\n$`));
  assert.match(io.err, /skipping 1 file that are not PNG, JPEG or WebP: .*notes\.txt/);
  assert.match(io.err, /\[#+\.*\] 1\/2 steps, loss \d\.\d{4}, \d+s left\n/);
  assert.match(io.err, /\[#{30}\] 2\/2 steps/);
  const written = new Uint8Array(readFileSync(out));
  assert.equal(parseConcept(written).name, 'hugsy');

  const images = await Promise.all(['a.png', 'b.jpg', 'c.webp'].map((f) => readTrainingImage(join(pictures, f), 128)));
  let checkpoint: Uint8Array | undefined;
  const direct = await teachConcept(pipe, {
    name: 'hugsy', category: 'teddy', images, steps: 2, batchSize: 1, gradientAccumulation: 2, seed: 3, cacheDir,
    checkpointEvery: 1, onCheckpoint: (state) => { checkpoint = state; },
  });
  assert.ok(Buffer.from(written).equals(Buffer.from(direct.bytes)), 'the command line teaches exactly what the engine call does');

  const progressFile = join(tmp, 'hugsy.progress');
  writeFileSync(progressFile, checkpoint!);
  const resumed = captured();
  const resumedOut = join(tmp, 'resumed.concept');
  assert.equal(await teach([...teachArgs, '--out', resumedOut, '--checkpoint', progressFile], resumed), 0, resumed.err);
  assert.match(resumed.err, /continuing from the saved progress in/);
  assert.doesNotMatch(resumed.err, / 1\/2 steps/);
  assert.ok(Buffer.from(readFileSync(resumedOut)).equals(Buffer.from(direct.bytes)));
});

test('npm run teach: one clear line for every problem, no stack trace', async () => {
  const empty = join(tmp, 'empty');
  mkdirSync(empty);
  const broken = join(tmp, 'broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'x.png'), Buffer.from('\x89PNG\r\n\x1a\n not really'));
  const cases: [string[], number, RegExp][] = [
    [['--category', 'teddy', '--images', pictures], 2, /^teach: --name is required: how prompts will mention the concept\nusage: npm run teach/],
    [['--name', 'x', '--category', 'teddy', '--images', pictures, '--steps', 'many'], 2, /--steps must be a whole number from 1 to 10000; got "many"/],
    [['--name', 'x', '--category', 'teddy', '--images', join(tmp, 'nowhere'), '--model', model], 1, /teach: cannot open the picture folder .*nowhere: it does not exist\n$/],
    [['--name', 'x', '--category', 'teddy', '--images', empty, '--model', model], 1, /teach: the folder .*empty has no PNG, JPEG or WebP pictures\n$/],
    [['--name', 'x', '--category', 'teddy', '--images', broken, '--model', model, '--backend', 'wasm'], 1, /teach: could not read the picture .*x\.png: /],
    [['--name', 'x', '--category', 'teddy bear', '--images', pictures, '--model', model, '--backend', 'wasm'], 1,
      /teach: The category "teddy bear" is 2 CLIP tokens, but it must be a single token \(one common word\)\. Try one of: bear, teddy/],
  ];
  for (const [args, status, message] of cases) {
    const io = captured();
    assert.equal(await teach(args, io), status, `${args.join(' ')}: ${io.err}`);
    assert.match(io.err, message);
    assert.doesNotMatch(io.err, /\n\s+at /, 'no stack trace');
    assert.equal(io.out, '');
  }
});

test('npm run imagine -- --concept FILE --strength β draws with the taught concept', async () => {
  const conceptFile = join(tmp, 'hugsy.concept');
  const concept = parseConcept(new Uint8Array(readFileSync(conceptFile)));
  const out = join(tmp, 'hugsy.png');
  const args = ['--prompt', 'a photo of <hugsy> on the beach', '--model', model, '--backend', 'wasm', '--steps', '2', '--seed', '8', '--size', '64'];
  const io = captured();
  assert.equal(await imagine([...args, '--concept', conceptFile, '--strength', '0.5', '--out', out], io), 0, io.err);
  const withConditioner = await StableDiffusionPipeline.load(model, { backend: 'wasm', conceptConditioner: createPerfusionConditioner({ cacheDir }) });
  try {
    const expected = await withConditioner.generate({ prompt: 'a photo of <hugsy> on the beach', steps: 2, seed: 8, width: 64, height: 64, concepts: [{ ...concept, beta: 0.5 }] });
    assert.ok(Buffer.from(readFileSync(out)).equals(Buffer.from(expected.png)), 'the PNG of the same request through the engine');
    const ownBeta = await withConditioner.generate({ prompt: 'a photo of <hugsy> on the beach', steps: 2, seed: 8, width: 64, height: 64, concepts: [concept] });
    assert.ok(!Buffer.from(ownBeta.png).equals(Buffer.from(expected.png)), '--strength changes the picture');
  } finally {
    withConditioner.dispose();
  }

  const notConcept = join(tmp, 'notes.concept');
  writeFileSync(notConcept, 'hello');
  const cases: [string[], RegExp][] = [
    [['--concept', notConcept], /imagine: .*notes\.concept: This is not a Perfusion concept file/],
    [['--concept', join(tmp, 'missing.concept')], /imagine: cannot read the concept file .*missing\.concept: it does not exist/],
    [['--concept', conceptFile, '--prompt', 'a photo of <bob>'], /imagine: I don't know the concept <bob>/],
    [['--concept', conceptFile, '--strength', 'strong'], /imagine: --strength must be a number such as 0\.7; got "strong"/],
  ];
  for (const [extra, message] of cases) {
    const e = captured();
    const status = await imagine([...args, '--out', join(tmp, 'x.png'), ...extra], e);
    assert.notEqual(status, 0);
    assert.match(e.err, message);
    assert.doesNotMatch(e.err, /\n\s+at /);
  }
});
