// Block Kit builders: the teach modal, the core's messages as mrkdwn with the core's button ids, escaping; and the
// app manifest's agreement with them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  MAX_TEACH_IMAGES, SLACK_COMMANDS, TEACH_INPUTS, TEACH_MODAL_CALLBACK_ID, TEACH_SHORTCUT_CALLBACK_ID,
  decodeTeachOrigin, encodeTeachOrigin, escapeSlackText, readTeachSubmission, slackMessage, slackText, teachModal, teachModalErrors,
  typedText,
} from '../../../src/chat/slack/blocks.ts';
import { escapeLikeSlack } from './signed-requests.ts';
import { escapeChatText, generationButtons } from '../../../src/chat/messages.ts';
import { commands } from '../../../commands/index.ts';
import { TYPED_COMMAND } from '../../../src/chat/slack/front-end.ts';
import { SLACK_EVENTS_PATH } from '../../../src/chat/slack/config.ts';

type AnyBlock = Record<string, any>;

describe('Slack Block Kit builders', () => {
  it('escapes &, < and > so user text cannot mention @channel or users', () => {
    assert.equal(escapeSlackText('a <hugsy> & <!channel> <@U123>'), 'a &lt;hugsy&gt; &amp; &lt;!channel&gt; &lt;@U123&gt;');
    const msg = slackMessage({ text: `🖼️ “${escapeChatText('<!here> photo of <@U1>')}”` });
    assert.equal(JSON.stringify(msg).includes('<!here>'), false);
    assert.equal(JSON.stringify(msg).includes('<@U1>'), false);
  });

  it('the core\'s text as mrkdwn: backslash escapes removed (Slack has none), **bold** → *bold*, <name> shown as written', () => {
    assert.equal(slackText(`**Image #3**: “${escapeChatText('a *big* dog_house | `x`')}” with <hugsy>`), '*Image #3*: “a *big* dog_house | `x`” with &lt;hugsy&gt;');
    assert.equal(slackText(escapeChatText('tea @here and @channel')), 'tea @\u200bhere and @\u200bchannel', 'mass mentions stay neutralised');
    assert.equal(slackText(escapeChatText('back\\slash')), 'back\\slash');
  });

  it('a core message: one section and one actions block whose action_ids are the core\'s button ids; delete asks first', () => {
    const m = slackMessage({ text: '🖼️ Image #7', buttons: generationButtons(7) }, { prefix: '<@U1> ', buttonValues: { 'delete:7': 'F123' } });
    assert.equal(m.text, '<@U1> 🖼️ Image #7');
    const [section, actions] = m.blocks as AnyBlock[];
    assert.equal(section!.text.text, '<@U1> 🖼️ Image #7');
    assert.deepEqual(actions!.elements.map((e: AnyBlock) => [e.action_id, e.value, e.style ?? null, Boolean(e.confirm)]), [
      ['reroll:7', 'reroll:7', 'primary', false], ['vary:7', 'vary:7', null, false], ['info:7', 'info:7', null, false], ['delete:7', 'F123', 'danger', true],
    ]);
    assert.equal(slackMessage({ text: 'no buttons' }).blocks.length, 1);
    assert.equal((slackMessage({ text: 'x'.repeat(5000) }).blocks[0] as AnyBlock).text.text.length, 3000, 'a section holds at most 3000 characters');
  });

  it('slash command text back as typed: entities decoded, Slack\'s markup as plain text', () => {
    assert.equal(typedText(escapeLikeSlack('a photo of <hugsy:0.8> & <rex> > 3')), 'a photo of <hugsy:0.8> & <rex> > 3');
    assert.equal(typedText('&lt;hugsy&gt; with <@U123|ana> in <#C42|general> at <https://x.example/a|the site> <https://x.example/b> <!here> <!subteam^S1|@artists>'),
      '<hugsy> with @ana in #general at the site https://x.example/b @here @artists');
    assert.equal(typedText('<@U123>'), '@U123');
    assert.equal(typedText('&amp;lt;'), '&lt;', 'decoded once');
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

});

describe('Slack app manifest', () => {
  const manifest = JSON.parse(readFileSync(new URL('../../../src/chat/slack/manifest.json', import.meta.url), 'utf8'));

  it('registers the issue\'s slash commands, each one the core answers (or /teach\'s form), at the events path', () => {
    assert.deepEqual(manifest.features.slash_commands.map((c: AnyBlock) => c.command), [...SLACK_COMMANDS]);
    const known = new Set(commands.map((c) => `/${c.description.name}`));
    for (const c of SLACK_COMMANDS) assert.ok(known.has(c), `${c} is a command of the core`);
    // the typed-command listener takes every command but /teach, which opens the form instead
    for (const c of SLACK_COMMANDS) assert.equal(TYPED_COMMAND.test(c), c !== '/teach', c);
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
