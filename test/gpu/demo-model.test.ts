import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import sharp from 'sharp';
import { loadPipeline, ModelLoadError } from '../../gpu/index.ts';
import { DEMO_WORDS } from '../../gpu/model/demo-bpe.ts';
import { DEMO_MARKER, ensureDemoModel, isDemoModel } from '../../gpu/model/demo-model.ts';
import { openModelFolder } from '../../gpu/model/loader.ts';

const tmp = mkdtempSync(join(tmpdir(), 'demo-model-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** relative path → sha256 of every file under dir */
function digest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

test('the demo model is written in the diffusers layout, the same bytes every time', () => {
  const a = ensureDemoModel(join(tmp, 'a'));
  const b = ensureDemoModel(join(tmp, 'nested/b'));
  const files = digest(a);
  assert.deepEqual(Object.keys(files), [
    'model_index.json', DEMO_MARKER, 'scheduler/scheduler_config.json', 'text_encoder/config.json',
    'text_encoder/model.safetensors', 'tokenizer/merges.txt', 'tokenizer/special_tokens_map.json',
    'tokenizer/tokenizer_config.json', 'tokenizer/vocab.json', 'unet/config.json',
    'unet/diffusion_pytorch_model.safetensors', 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors',
  ]);
  assert.deepEqual(digest(b), files);
  // nothing is left next to it
  assert.deepEqual(readdirSync(tmp).sort(), ['a', 'nested']);
  // a second call finds it complete and leaves it alone
  const mtime = statSync(join(a, 'unet/diffusion_pytorch_model.safetensors')).mtimeMs;
  assert.equal(ensureDemoModel(a), a);
  assert.equal(statSync(join(a, 'unet/diffusion_pytorch_model.safetensors')).mtimeMs, mtime);
});

test('the loader reads it as an SD 1.x model whose tokenizer handles any text and has every listed word as one token', () => {
  const dir = ensureDemoModel(join(tmp, 'a'));
  const folder = openModelFolder(dir);
  try {
    assert.equal(folder.schedulerConfig.className, 'PNDMScheduler');
    assert.equal(folder.vaeConfig.sampleSize, 128);
    assert.equal(folder.unetConfig.sampleSize, 16);
    const t = folder.tokenizer;
    assert.equal(t.vocabSize, folder.textEncoderConfig.vocabSize);
    for (const word of DEMO_WORDS) assert.notEqual(t.tokenIdOf(word), undefined, `"${word}" is not a single token`);
    for (const text of ['a photo of a dog', 'Ünïcödé — 東京 🐶!!', 'zzzqqq xylophone 7']) {
      const ids = t.encode(text);
      assert.equal(ids.length, 77);
      assert.ok(ids.every((id) => id >= 0 && id < t.vocabSize));
      assert.equal(t.decode(ids), text.toLowerCase().normalize('NFC'));
    }
    assert.deepEqual(t.encode('a photo of a dog').slice(0, 7).map((id) => t.decode([id])), ['', 'a', 'photo', 'of', 'a', 'dog', '']);
  } finally {
    folder.close();
  }
});

test('a half-written or outdated folder is rebuilt; a folder with other files is refused', () => {
  const dir = ensureDemoModel(join(tmp, 'c'));
  const expected = digest(dir);
  // a crash midway: weights truncated, marker missing
  rmSync(join(dir, DEMO_MARKER));
  writeFileSync(join(dir, 'unet/diffusion_pytorch_model.safetensors'), 'partial');
  assert.equal(isDemoModel(dir), false);
  ensureDemoModel(dir);
  assert.deepEqual(digest(dir), expected);
  // an older demo format
  writeFileSync(join(dir, DEMO_MARKER), '{"format":"perfusion-bot demo model","version":0}');
  ensureDemoModel(dir);
  assert.deepEqual(digest(dir), expected);
  // someone's own folder
  const own = join(tmp, 'own');
  mkdirSync(own);
  writeFileSync(join(own, 'notes.txt'), 'mine');
  assert.throws(() => ensureDemoModel(own), (err: unknown) => err instanceof ModelLoadError && /already holds other files \(notes.txt\)/.test(err.message));
  assert.deepEqual(readdirSync(own), ['notes.txt']);
});

test('the pipeline generates a 128×128 PNG with it and reports it as the built-in demo model', async () => {
  const pipe = await loadPipeline(ensureDemoModel(join(tmp, 'a')), { backend: 'wasm' });
  try {
    assert.equal(pipe.model.isDemo, true);
    assert.equal(pipe.model.name, 'built-in demo model');
    assert.equal(pipe.model.resolution, 128);
    const result = await pipe.generate({ prompt: 'a cute teddy bear on the beach', steps: 3, seed: 7 });
    assert.ok(result.pixels.every(Number.isFinite));
    const { info } = await sharp(result.png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [128, 128]);
    // not a flat image: the random network still makes structure
    const min = Math.min(...result.pixels);
    const max = Math.max(...result.pixels);
    assert.ok(max - min > 0.05, `pixel range ${min}..${max}`);
  } finally {
    pipe.dispose();
  }
});
