// Block Kit builders, the action_id codec and escaping, and the app manifest's agreement with them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BUTTON_ACTIONS, MAX_TEACH_IMAGES, SLACK_COMMANDS, TEACH_INPUTS, TEACH_MODAL_CALLBACK_ID, TEACH_SHORTCUT_CALLBACK_ID,
  buttonActionId, decodeTeachOrigin, encodeTeachOrigin, errorMessage, escapeSlackText, infoMessage, parseButtonActionId,
  progressBar, progressMessage, readTeachSubmission, resultMessage, teachModal, teachModalErrors,
} from '../../../src/chat/slack/blocks.ts';
import { SLACK_EVENTS_PATH } from '../../../src/chat/slack/config.ts';

type AnyBlock = Record<string, any>;

describe('Slack Block Kit builders', () => {
  it('escapes &, < and > so user text cannot mention @channel or users', () => {
    assert.equal(escapeSlackText('a <hugsy> & <!channel> <@U123>'), 'a &lt;hugsy&gt; &amp; &lt;!channel&gt; &lt;@U123&gt;');
    const msg = resultMessage({ generationId: 'g', prompt: '<!here> photo', requesterUserId: 'U1' });
    assert.equal(JSON.stringify(msg.blocks).includes('<!here>'), false);
  });

  it('teach modal from /teach: name, category and a file input for up to 10 images; the origin travels in private_metadata', () => {
    const view = teachModal({ origin: { channel: 'C1' }, name: 'hugsy', category: 'teddy' });
    assert.equal(view.type, 'modal');
    assert.equal(view.callback_id, TEACH_MODAL_CALLBACK_ID);
    const blocks = view.blocks as AnyBlock[];
    assert.deepEqual(blocks.map((b) => [b.type, b.block_id, b.element.type, b.element.action_id]), [
      ['input', TEACH_INPUTS.name.block, 'plain_text_input', TEACH_INPUTS.name.action],
      ['input', TEACH_INPUTS.category.block, 'plain_text_input', TEACH_INPUTS.category.action],
      ['input', TEACH_INPUTS.images.block, 'file_input', TEACH_INPUTS.images.action],
    ]);
    assert.equal(blocks[0]!.element.initial_value, 'hugsy');
    assert.equal(blocks[1]!.element.initial_value, 'teddy');
    assert.equal(blocks[2]!.element.max_files, MAX_TEACH_IMAGES);
    assert.deepEqual(blocks[2]!.element.filetypes, ['png', 'jpg', 'jpeg', 'webp']);
    assert.deepEqual(decodeTeachOrigin(view.private_metadata!), { channel: 'C1' });
    assert.ok(view.title.text.length <= 24 && view.submit!.text.length <= 24, 'Slack limits modal titles and buttons to 24 characters');
  });

  it('teach modal from the message shortcut: no file input, says how many images the message has', () => {
    const view = teachModal({ origin: { channel: 'C1', messageTs: '1.2', fileIds: ['F1', 'F2', 'F3'] }, imagesFromMessage: 3 });
    const blocks = view.blocks as AnyBlock[];
    assert.equal(blocks.some((b) => b.element?.type === 'file_input'), false);
    assert.match(blocks[2]!.elements[0].text, /the 3 images in the selected message/);
    assert.deepEqual(decodeTeachOrigin(view.private_metadata!), { channel: 'C1', messageTs: '1.2', fileIds: ['F1', 'F2', 'F3'] });
    assert.ok(view.private_metadata!.length <= 3000);
  });

  it('origin metadata: too many files are refused when encoding, foreign metadata decodes to null', () => {
    assert.throws(() => encodeTeachOrigin({ channel: 'C1', fileIds: Array.from({ length: 11 }, (_, i) => `F${i}`) }));
    assert.equal(decodeTeachOrigin('not json'), null);
    assert.equal(decodeTeachOrigin('{"chan":"C1"}'), null);
  });

  it('reads a submission back: trimmed text, the files, the origin; missing inputs read as empty', () => {
    const file = { id: 'F1', name: 'a.png', mimetype: 'image/png', size: 10, url_private: 'https://files.slack.com/x', url_private_download: 'https://files.slack.com/y', extra: 1 };
    const sub = readTeachSubmission({
      private_metadata: encodeTeachOrigin({ channel: 'C9' }),
      state: {
        values: {
          [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { value: '  hugsy ' } },
          [TEACH_INPUTS.images.block]: { [TEACH_INPUTS.images.action]: { files: [file, { no: 'id' }] } },
        },
      },
    });
    assert.equal(sub.name, 'hugsy');
    assert.equal(sub.category, '');
    assert.deepEqual(sub.files, [{ id: 'F1', name: 'a.png', mimetype: 'image/png', size: 10, url_private: 'https://files.slack.com/x', url_private_download: 'https://files.slack.com/y' }]);
    assert.deepEqual(sub.origin, { channel: 'C9' });
  });

  it('modal errors map fields to their block ids', () => {
    assert.deepEqual(teachModalErrors({ name: 'taken', images: 'need 3' }), {
      response_action: 'errors', errors: { [TEACH_INPUTS.name.block]: 'taken', [TEACH_INPUTS.images.block]: 'need 3' },
    });
  });

  it('button action_ids carry the id and parse back; anything else is not ours', () => {
    for (const action of BUTTON_ACTIONS) {
      assert.deepEqual(parseButtonActionId(buttonActionId(action, 'gen:42')), { action, id: 'gen:42' });
    }
    assert.equal(parseButtonActionId('upscale:1'), null);
    assert.equal(parseButtonActionId('reroll:'), null);
    assert.throws(() => buttonActionId('reroll', ''), RangeError);
    assert.throws(() => buttonActionId('reroll', 'x'.repeat(250)), RangeError);
  });

  it('progress message: bar, status, cancel button with the job id; fallback text for notifications', () => {
    assert.equal(progressBar(0), '▱▱▱▱▱▱▱▱▱▱ 0%');
    assert.equal(progressBar(0.46), '▰▰▰▰▱▱▱▱▱▱ 46%');
    assert.equal(progressBar(1), '▰▰▰▰▰▰▰▰▰▰ 100%');
    assert.equal(progressBar(Number.NaN), '▱▱▱▱▱▱▱▱▱▱ 0%');
    const m = progressMessage({ title: 'Teaching <hugsy>', status: 'Step 3 of 10', fraction: 0.3, cancelJobId: 'job-7' });
    assert.equal(m.text, 'Teaching <hugsy>: Step 3 of 10 (30%)');
    const blocks = m.blocks as AnyBlock[];
    assert.equal(blocks[0]!.text.text, '*Teaching &lt;hugsy&gt;*\nStep 3 of 10\n`▰▰▰▱▱▱▱▱▱▱ 30%`');
    assert.deepEqual(blocks[1]!.elements.map((e: AnyBlock) => e.action_id), ['cancel:job-7']);
    assert.equal(progressMessage({ title: 't', status: 'done' }).blocks.length, 1);
  });

  it('result message: requester, prompt, details and the four buttons; delete asks for confirmation', () => {
    const m = resultMessage({ generationId: 'g1', prompt: 'a photo of <hugsy>', details: 'seed 7', requesterUserId: 'U1' });
    const blocks = m.blocks as AnyBlock[];
    assert.equal(blocks[0]!.text.text, '<@U1> *a photo of &lt;hugsy&gt;*\nseed 7');
    assert.deepEqual(blocks[1]!.elements.map((e: AnyBlock) => [e.action_id, e.value]), [['reroll:g1', 'g1'], ['variations:g1', 'g1'], ['info:g1', 'g1'], ['delete:g1', 'g1']]);
    assert.equal(blocks[1]!.elements[3].style, 'danger');
    assert.ok(blocks[1]!.elements[3].confirm);
    assert.equal(m.text, 'Image ready: a photo of <hugsy>');
  });

  it('info and error messages', () => {
    const fields: Array<[string, string]> = Array.from({ length: 12 }, (_, i) => [`k${i}`, `<v${i}>`]);
    const info = infoMessage('Generation g1', fields).blocks as AnyBlock[];
    assert.deepEqual(info.map((b) => b.fields?.length ?? 0), [0, 10, 2], 'a section holds at most 10 fields');
    assert.equal(info[1]!.fields[0].text, '*k0*\n&lt;v0&gt;');
    const err = errorMessage('Could not teach <x>', 'Use 3 to 10 images.');
    assert.equal((err.blocks[0] as AnyBlock).text.text, ':warning: *Could not teach &lt;x&gt;*\nUse 3 to 10 images.');
  });
});

describe('Slack app manifest', () => {
  const manifest = JSON.parse(readFileSync(new URL('../../../src/chat/slack/manifest.json', import.meta.url), 'utf8'));

  it('registers exactly the slash commands the adapter handles, at the events path', () => {
    assert.deepEqual(manifest.features.slash_commands.map((c: AnyBlock) => c.command), [...SLACK_COMMANDS]);
    for (const c of manifest.features.slash_commands) {
      assert.ok(c.url.endsWith(SLACK_EVENTS_PATH));
      assert.ok(c.description.length <= 100);
    }
  });

  it('has the "Teach concept" message shortcut, interactivity, and the bot scopes the adapter needs', () => {
    assert.deepEqual(manifest.features.shortcuts, [{ name: 'Teach concept', type: 'message', callback_id: TEACH_SHORTCUT_CALLBACK_ID, description: 'Teach a concept from the images in this message' }]);
    assert.equal(manifest.settings.interactivity.is_enabled, true);
    assert.ok(manifest.settings.interactivity.request_url.endsWith(SLACK_EVENTS_PATH));
    for (const scope of ['commands', 'chat:write', 'files:read', 'files:write', 'users:read']) {
      assert.ok(manifest.oauth_config.scopes.bot.includes(scope), `missing bot scope ${scope}`);
    }
  });
});
