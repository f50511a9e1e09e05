// A real headless Chromium (Debian's `chromium`, driven by playwright-core) uses the local chat page to
// teach a concept and imagine with it; the test checks that the image appears on the page.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startApp, type App } from '../../../src/app.ts';
import { pngImage, testConfig, testDataDir, type TestDir } from '../../src/helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) ? `no browser at ${CHROMIUM} (apt-get install chromium)` : false;
// Skipped on a developer's machine without it; in CI (.ci/run installs chromium) a missing browser is a failure.
if (skip && process.env.CI === 'true') throw new Error(`the browser test cannot run in CI: ${skip}`);

describe('the local chat page in Chromium', { skip }, () => {
  let app: App;
  let dir: TestDir;
  let browser: BrowserContext;
  let page: Page;
  let profile: string;
  let files: string[];

  before(async () => {
    dir = await testDataDir({ TEACH_BATCH_SIZE: '1', TEACH_GRADIENT_ACCUMULATION: '1', TEACH_STEPS: '10' });
    app = await startApp(testConfig(dir.env));
    await app.bot.engineReady();
    profile = mkdtempSync(join(tmpdir(), 'perfusion-chromium-'));
    files = await Promise.all(['#c03030', '#b83838', '#c82828'].map(async (c, i) => {
      const f = join(dir.dir, `photo-${i}.png`);
      writeFileSync(f, await pngImage(160, 160, c));
      return f;
    }));
    // an empty profile folder is the --user-data-dir (playwright passes it for a persistent context)
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run'],
    });
    page = browser.pages()[0] ?? await browser.newPage();
    await page.goto(app.chat!.url);
  });
  after(async () => {
    await browser?.close();
    await app?.stop();
    dir?.cleanup();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  async function send(text: string) {
    await page.fill('#text', text);
    await page.click('#send');
  }

  test('the page says which model runs', async () => {
    await page.waitForFunction(() => document.getElementById('model')!.textContent !== 'loading…');
    assert.match(await page.textContent('#model') ?? '', /model: model/);
  });

  test('teach with uploaded files, then imagine with the concept: the image appears', async () => {
    await page.setInputFiles('#files', files);
    await send('/teach hugsy dog');
    const teachMsg = page.locator('.msg.bot').last();
    await teachMsg.locator('text=/job #\\d+/').waitFor({ timeout: 30_000 });
    await page.locator('.msg.bot', { hasText: 'is ready after 10 training steps' }).waitFor({ timeout: 180_000 });

    await send('/imagine a photo of <hugsy> on the beach steps:3');
    const img = page.locator('.msg.bot img').first();
    await img.waitFor({ timeout: 120_000 });
    const loaded = await img.evaluate((el: HTMLImageElement) => el.decode().then(() => [el.naturalWidth, el.naturalHeight]));
    assert.deepEqual(loaded, [128, 128]);
    const text = await page.locator('.msg.bot', { has: page.locator('img') }).last().textContent();
    assert.match(text ?? '', /Image #\d+: “a photo of <hugsy> on the beach” · seed \d+ · 3 steps/);
  });

  test('imagine by typing a prompt: live progress, the image, and its buttons', async () => {
    const before = await page.locator('.msg.bot img').count();
    await send('a red apple on a table');
    const card = page.locator('.msg.bot').last();
    await card.locator('text=/job #\\d+/').waitFor({ timeout: 30_000 });
    // live progress: a progress bar and the step count while it draws (30 steps by default)
    await page.waitForFunction(() => {
      const last = Array.from(document.querySelectorAll('.msg.bot')).at(-1)!;
      return last.querySelector('progress') !== null && /step \d+\/\d+ \(\d+%\)/.test(last.textContent ?? '');
    }, undefined, { timeout: 60_000 });
    await page.waitForFunction((n) => document.querySelectorAll('.msg.bot img').length > n, before, { timeout: 120_000 });
    assert.match(await card.textContent() ?? '', /Image #\d+: “a red apple on a table”/);
    // the Info button answers from the stored generation
    await card.locator('button', { hasText: 'Info' }).click();
    await page.locator('.msg.bot', { hasText: 'sampler' }).waitFor({ timeout: 10_000 });
    assert.match(await page.locator('.msg.bot').last().textContent() ?? '', /prompt: a red apple on a table/);
  });

  test('a prompt sent while another draws waits in line, says so, and its Cancel button takes it out', async () => {
    await send('a green pear');
    // the pear is drawing (its message shows progress) before the lemon is sent
    await page.waitForFunction(() => {
      const last = Array.from(document.querySelectorAll('.msg.bot')).at(-1)!;
      return last.querySelector('progress') !== null && /step \d+\/\d+/.test(last.textContent ?? '');
    }, undefined, { timeout: 60_000 });
    await send('a yellow lemon');
    const waiting = page.locator('.msg.bot', { hasText: /is queued, next in line/ });
    await waiting.first().waitFor({ timeout: 30_000 });
    const jobId = /job #(\d+)/.exec(await waiting.first().textContent() ?? '')?.[1];
    assert.ok(jobId, 'the waiting message names its job');
    await waiting.first().locator('button', { hasText: 'Cancel' }).click();
    await page.locator('.msg.bot', { hasText: new RegExp(`Job #${jobId} (is|was) cancelled`) }).first().waitFor({ timeout: 30_000 });
    const job = await (await fetch(`${app.chat!.url}api/jobs/${jobId}`)).json() as { state: string };
    assert.equal(job.state, 'cancelled');
  });

  test('a bad upload is answered in words on the page', async () => {
    const bad = join(dir.dir, 'notes.png');
    writeFileSync(bad, 'not an image at all');
    await page.setInputFiles('#files', [bad]);
    await send('/teach rex dog');
    await page.locator('.msg.bot.error', { hasText: 'is not an image I can read' }).waitFor({ timeout: 10_000 });
  });
});
