import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  applicationCommands, COMMAND_NAMES, MAX_TEACH_IMAGES, parseTeachModalId, teachFromMessageModal, TEACH_MODAL_FIELDS,
} from '../../../src/chat/discord/application-commands.ts';
import { generationButtonId, generationButtonRow, parseGenerationButtonId } from '../../../src/chat/discord/button-ids.ts';

type Option = { name: string; type: number; required?: boolean; autocomplete?: boolean; choices?: unknown[] };
type Command = { name: string; type?: number; description?: string; options?: Option[]; contexts?: number[]; integration_types?: number[] };

const byName = (commands: Command[], name: string) => commands.find((c) => c.name === name)!;

test('the bot registers /teach, /imagine, /concepts, /queue, /cancel and the message command', () => {
  const commands = applicationCommands('guild') as Command[];
  assert.deepEqual(commands.map((c) => [c.name, c.type ?? 1]), [
    ['teach', 1], ['imagine', 1], ['concepts', 1], ['queue', 1], ['cancel', 1], [COMMAND_NAMES.teachFromMessage, 3],
  ]);
  assert.ok(COMMAND_NAMES.teachFromMessage.length <= 32, 'context menu names are at most 32 characters');
  assert.equal(byName(commands, COMMAND_NAMES.teachFromMessage).options, undefined);
});

test('/teach: name and category, then image1 required and image2…image10 optional attachments', () => {
  const teach = byName(applicationCommands('guild') as Command[], 'teach');
  const options = teach.options!;
  assert.deepEqual(options.slice(0, 2).map((o) => [o.name, o.type, o.required]), [['name', 3, true], ['category', 3, true]]);
  const images = options.slice(2);
  assert.equal(images.length, MAX_TEACH_IMAGES);
  images.forEach((o, i) => {
    assert.equal(o.name, `image${i + 1}`);
    assert.equal(o.type, 11, 'attachment option');
    assert.equal(o.required, i === 0);
  });
  const firstOptional = options.findIndex((o) => !o.required);
  assert.ok(options.slice(firstOptional).every((o) => !o.required), 'required options come first');
  assert.ok(options.length <= 25);
});

test('/imagine: prompt autocompletes, the other settings are typed and bounded', () => {
  const imagine = byName(applicationCommands('guild') as Command[], 'imagine');
  const [prompt, ...rest] = imagine.options!;
  assert.deepEqual([prompt!.name, prompt!.type, prompt!.required, prompt!.autocomplete], ['prompt', 3, true, true]);
  assert.deepEqual(rest.map((o) => [o.name, o.type]), [
    ['negative', 3], ['seed', 4], ['steps', 4], ['guidance', 10], ['size', 3], ['strength', 10], ['sampler', 3],
  ]);
  assert.ok(rest.every((o) => !o.required));
  assert.ok(rest.every((o) => !(o.autocomplete && o.choices)), 'autocomplete and choices never together');
});

test('global commands work in servers and in DMs with the bot; guild commands carry no contexts', () => {
  for (const command of applicationCommands('global') as Command[]) {
    assert.deepEqual(command.contexts, [0, 1], command.name);
    assert.deepEqual(command.integration_types, [0], command.name);
  }
  for (const command of applicationCommands('guild') as Command[]) {
    assert.equal(command.contexts, undefined);
    assert.equal(command.integration_types, undefined);
  }
});

test('the teach modal asks for name and category and names the message in its custom id', () => {
  const modal = teachFromMessageModal('112233445566778899').toJSON() as unknown as {
    custom_id: string; title: string; components: Array<{ type: number; component: { custom_id: string; type: number } }>;
  };
  assert.equal(parseTeachModalId(modal.custom_id), '112233445566778899');
  assert.ok(modal.title.length <= 45);
  assert.deepEqual(modal.components.map((c) => [c.type, c.component.type, c.component.custom_id]),
    [[18, 4, TEACH_MODAL_FIELDS.name], [18, 4, TEACH_MODAL_FIELDS.category]]);
  assert.equal(parseTeachModalId('teach-msg:abc'), null);
  assert.equal(parseTeachModalId('other:112233445566778899'), null);
});

test('button custom ids carry action and generation id, round-trip, and stay within 100 characters', () => {
  for (const action of ['reroll', 'variations', 'info', 'delete'] as const) {
    const id = generationButtonId(action, 'clx9w2k3p0000abcd');
    assert.deepEqual(parseGenerationButtonId(id), { action, generationId: 'clx9w2k3p0000abcd' });
  }
  const longest = generationButtonId('variations', 'x'.repeat(80));
  assert.ok(longest.length <= 100);
  assert.throws(() => generationButtonId('info', 'x'.repeat(81)), RangeError);
  assert.throws(() => generationButtonId('info', 'a:b'), RangeError);
  assert.throws(() => generationButtonId('info', ''), RangeError);
  for (const bad of ['gen1:explode:42', 'gen1:info', 'gen1:info:42:extra', 'gen2:info:42', 'teach-msg:1', 'gen1:info:a b']) {
    assert.equal(parseGenerationButtonId(bad), null, bad);
  }
});

test('the button row: re-roll, variations, info, delete (danger style)', () => {
  const row = generationButtonRow('42').toJSON() as unknown as { components: Array<{ custom_id: string; style: number; label: string }> };
  assert.deepEqual(row.components.map((b) => b.custom_id), ['gen1:reroll:42', 'gen1:variations:42', 'gen1:info:42', 'gen1:delete:42']);
  assert.equal(row.components[3]!.style, 4);
  assert.equal(new Set(row.components.map((b) => b.custom_id)).size, 4);
});
