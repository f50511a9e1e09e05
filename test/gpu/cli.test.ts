import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { imagine } from '../../gpu/cli/imagine.ts';
import type { CliIo } from '../../gpu/cli/io.ts';
import { loadPipeline } from '../../gpu/index.ts';
import { fixtureModelDir } from './sd-tiny-reference.ts';

const root = new URL('../..', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'imagine-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function captured(env: Record<string, string | undefined> = {}): CliIo & { out: string; err: string } {
  const io = {
    out: '', err: '', env, interactive: false,
    stdout: (t: string) => { io.out += t; },
    stderr: (t: string) => { io.err += t; },
  };
  return io;
}

test('the command line tool writes the PNG the engine makes for the same request', async () => {
  const out = join(tmp, 'dog.png');
  const run = spawnSync(process.execPath, [
    '--import', 'tsx', 'gpu/cli/imagine.ts', '--prompt', 'a photo of a dog', '--negative', 'blurry', '--model', fixtureModelDir,
    '--backend', 'wasm', '--steps', '3', '--scheduler', 'ddim', '--guidance', '5', '--seed', '31337', '--out', out,
  ], { cwd: root, encoding: 'utf8', env: { ...process.env, MODEL_DIR: '' }, timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`^wrote ${out} \\(128×128, seed 31337, ddim, 3 steps, guidance 5, backend wasm\\) in [\\d.]+ s\\n$`));
  assert.match(run.stderr, /model: model \(.*sd-tiny-a\/model\), backend: wasm/);
  assert.match(run.stderr, /\[#+\] 3\/3 steps/);

  const png = readFileSync(out);
  const { info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [128, 128, 3]);
  const pipe = await loadPipeline(fixtureModelDir, { backend: 'wasm' });
  try {
    const same = await pipe.generate({ prompt: 'a photo of a dog', negativePrompt: 'blurry', steps: 3, scheduler: 'ddim', guidance: 5, seed: 31337 });
    assert.deepEqual(new Uint8Array(png), same.png);
  } finally {
    pipe.dispose();
  }
});

test('npm run imagine without --model or MODEL_DIR writes a PNG with the demo model, and says so plainly', async () => {
  const out = join(tmp, 'demo.png');
  const env: NodeJS.ProcessEnv = { ...process.env, DEMO_MODEL_DIR: join(tmp, 'demo') };
  delete env.MODEL_DIR;
  // as on a fresh clone: through npm, the backend left to auto
  const run = spawnSync('npm', ['run', '--silent', 'imagine', '--', '--prompt', 'a red car', '--steps', '1', '--seed', '2', '--out', out],
    { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /No --model given and MODEL_DIR is not set, so this uses the built-in demo model \(tiny random weights/);
  assert.match(run.stderr, /model: built-in demo model/);
  assert.match(run.stdout, /^wrote .*demo\.png \(128×128, seed 2, pndm, 1 steps/);
  const meta = await sharp(readFileSync(out)).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 128]);
  assert.ok(existsSync(join(tmp, 'demo/model_index.json')));
});

test('bad usage and bad requests get one clear line, no stack trace', async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [['--steps', '3'], 2, /^imagine: --prompt is required: say what to draw\nusage: npm run imagine/],
    [['--prompt', 'x', '--scheduler', 'lms'], 2, /^imagine: --scheduler must be one of pndm, ddim, euler, dpmpp-2m; got "lms"\n/],
    [['--prompt', 'x', '--size', 'big'], 2, /^imagine: --size must be WIDTHxHEIGHT in pixels/],
    [['--prompt', 'x', '--seed=-4'], 2, /^imagine: --seed must be a whole number from 0 to 4294967295; got "-4"\n/],
    [['--prompt', 'x', '--steps', '0'], 2, /^imagine: --steps must be a whole number from 1 to 500; got "0"\n/],
    [['--prompt', 'x', '--backend', 'cuda'], 2, /^imagine: --backend must be one of auto, webgpu, tensorflow, wasm, cpu; got "cuda"\n/],
    [['--prompt', 'x', '--frobnicate'], 2, /^imagine: Unknown option '--frobnicate'\n/],
    [['--prompt', 'x', '--model', join(tmp, 'missing'), '--backend', 'wasm'], 1, /^imagine: The model folder .*missing does not exist\. Point MODEL_DIR at/m],
    [['--prompt', 'x', '--model', fixtureModelDir, '--backend', 'wasm', '--size', '100x128'], 1, /^imagine: width must be a multiple of 8 pixels; got 100\n$/m],
  ];
  for (const [argv, expected, message] of cases) {
    const io = captured();
    assert.equal(await imagine(argv, io), expected, `${argv.join(' ')}: ${io.err}`);
    assert.match(io.err, message);
    assert.doesNotMatch(io.err, /\n\s+at /, 'no stack trace');
    assert.equal(io.out, '');
  }
  const help = captured();
  assert.equal(await imagine(['--help'], help), 0);
  assert.match(help.err, /^usage: npm run imagine -- --prompt/);
});

test('the engine benchmark runs end to end on random weights and prints its table', async () => {
  const json = join(tmp, 'bench.json');
  const run = spawnSync(process.execPath, [
    '--import', 'tsx', 'gpu/bench.ts', 'engine', '--architecture', 'demo', '--backend', 'wasm', '--size', '64', '--steps', '2', '--repeat', '1', '--json', json,
  ], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^engine benchmark: backend wasm, device .+\nmodel: random weights, demo architecture; 64×64/);
  for (const phase of ['load weights', 'text encoding \\(batch 2\\)', 'UNet step \\(batch 2, 8×8 latents\\)', 'VAE decode \\(8×8 → 64×64\\)', 'image 64×64, 2 steps \\(pndm\\)', 'peak during one UNet step', 'process RSS']) {
    assert.match(run.stdout, new RegExp(`\\n${phase}\\s+[\\d.]+ (ms|s|MiB|GiB)`), phase);
  }
  const results = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(results.imageStepMs.length, 3, 'PNDM: 2 steps in 3 UNet calls');
  assert.ok(results.unetStepPeakBytes > results.memory.afterLoad.numBytes);
  const unknown = spawnSync(process.execPath, ['--import', 'tsx', 'gpu/bench.ts', 'nope'], { cwd: root, encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^bench: no benchmark named "nope"\nusage: tsx gpu\/bench.ts <benchmark> \[options\]\n  engine: /);
});
