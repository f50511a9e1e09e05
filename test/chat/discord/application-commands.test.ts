// The Discord commands are derived from the core's CommandDescriptions (commands/*.ts): these tests check
// that every core command, subcommand and option is registered with Discord's matching type and limits, and
// that values Discord sends back for them read into options the core accepts — so the two cannot drift.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationCommandOptionType, type CommandInteractionOption } from 'discord.js';
import { commands } from '../../../commands/index.ts';
import { validateOptions } from '../../../src/bot.ts';
import {
  applicationCommands, discordOptionNames, parseTeachModalId, TEACH_FROM_MESSAGE, TEACH_MODAL_FIELDS, teachFromMessageModal,
} from '../../../src/chat/discord/application-commands.ts';
import { readCommandOptions, focusedOption } from '../../../src/chat/discord/command-options.ts';
import type { CommandDescription, OptionDescription } from '../../../src/chat/types.ts';

type Option = {
  name: string; type: number; description: string; required?: boolean; autocomplete?: boolean; choices?: Array<{ name: string; value: string }>;
  min_length?: number; max_length?: number; min_value?: number; max_value?: number; options?: Option[];
};
type Command = { name: string; type?: number; description?: string; options?: Option[]; contexts?: number[]; integration_types?: number[] };

const core: CommandDescription[] = commands.map((c) => c.description);
const registered = applicationCommands(core, 'guild') as Command[];
const byName = (name: string) => registered.find((c) => c.name === name && (c.type ?? 1) === 1)!;

const DISCORD_TYPE: Record<OptionDescription['type'], number> = {
  string: ApplicationCommandOptionType.String, integer: ApplicationCommandOptionType.Integer, number: ApplicationCommandOptionType.Number,
  boolean: ApplicationCommandOptionType.Boolean, attachments: ApplicationCommandOptionType.Attachment,
};

function checkOptions(where: string, described: readonly OptionDescription[], options: Option[]) {
  const expected = described.flatMap((o) => discordOptionNames(o));
  assert.deepEqual(new Set(options.map((o) => o.name)), new Set(expected), `${where}: the same options`);
  for (const o of described) {
    discordOptionNames(o).forEach((name, i) => {
      const d = options.find((x) => x.name === name)!;
      assert.equal(d.type, DISCORD_TYPE[o.type], `${where} ${name}: type`);
      const required = o.type === 'attachments' ? o.required === true && i < Math.max(1, o.min) : o.required === true;
      assert.equal(d.required ?? false, required, `${where} ${name}: required`);
      if (o.type === 'string') {
        assert.equal(d.min_length, o.minLength, `${where} ${name}: min length`);
        assert.equal(d.max_length, o.maxLength, `${where} ${name}: max length`);
        assert.equal(d.autocomplete ?? false, o.autocomplete !== undefined, `${where} ${name}: autocomplete`);
        assert.deepEqual(d.choices, o.choices?.map((c) => ({ name: c.name, value: c.value })), `${where} ${name}: choices`);
      }
      if (o.type === 'integer' || o.type === 'number') {
        assert.equal(d.min_value, o.min, `${where} ${name}: min`);
        assert.equal(d.max_value, o.max, `${where} ${name}: max`);
      }
    });
  }
  const firstOptional = options.findIndex((o) => !o.required);
  assert.ok(firstOptional === -1 || options.slice(firstOptional).every((o) => !o.required), `${where}: required options come first`);
  assert.ok(options.length <= 25, `${where}: at most 25 options`);
}

test('every core command is a slash command with the same options, subcommands, types and limits; then the message command', () => {
  assert.deepEqual(registered.map((c) => [c.name, c.type ?? 1]), [...core.map((c) => [c.name, 1]), [TEACH_FROM_MESSAGE, 3]]);
  for (const d of core) {
    const c = byName(d.name);
    assert.equal(c.description, d.description);
    if (d.subcommands?.length) {
      assert.deepEqual(c.options!.map((o) => [o.name, o.type]), d.subcommands.map((s) => [s.name, ApplicationCommandOptionType.Subcommand]));
      for (const s of d.subcommands) checkOptions(`/${d.name} ${s.name}`, s.options, c.options!.find((o) => o.name === s.name)!.options ?? []);
    } else {
      checkOptions(`/${d.name}`, d.options ?? [], c.options ?? []);
    }
  }
  assert.ok(TEACH_FROM_MESSAGE.length <= 32, 'context menu names are at most 32 characters');
  assert.equal(registered.at(-1)!.options, undefined);
});

test('/teach: name and category, then images1 required and images2…images10 optional, then steps', () => {
  const teach = byName('teach').options!;
  assert.deepEqual(teach.map((o) => [o.name, o.type, o.required ?? false]), [
    ['name', 3, true], ['category', 3, true], ['images1', 11, true],
    ...Array.from({ length: 9 }, (_, i) => [`images${i + 2}`, 11, false]), ['steps', 4, false],
  ]);
});

/** What Discord sends back for an option of the registered command (discord.js's `options.data` shape). */
function sent(o: Option, value: unknown): CommandInteractionOption {
  if (o.type === ApplicationCommandOptionType.Attachment) {
    const a = value as { id: string; name: string };
    return { name: o.name, type: o.type, value: a.id, attachment: { id: a.id, name: a.name, url: `https://cdn.discordapp.com/attachments/1/${a.id}/${a.name}`, size: 10, contentType: 'image/png' } } as unknown as CommandInteractionOption;
  }
  return { name: o.name, type: o.type, value } as CommandInteractionOption;
}

/** A value inside the option's limits, as Discord would accept it. */
function sample(o: Option): unknown {
  switch (o.type) {
    case ApplicationCommandOptionType.String: return o.choices?.[0]?.value ?? 'x'.repeat(Math.max(2, o.min_length ?? 1));
    case ApplicationCommandOptionType.Integer: return o.min_value ?? 1;
    case ApplicationCommandOptionType.Number: return o.max_value ?? 0.5;
    case ApplicationCommandOptionType.Boolean: return true;
    default: return { id: `${1000 + Math.floor(Math.random() * 1e6)}`, name: `${o.name}.png` };
  }
}

test('values Discord sends for every registered option read back into options the core accepts', () => {
  for (const d of core) {
    const c = byName(d.name);
    const variants = d.subcommands?.length ? d.subcommands.map((s) => ({ sub: s.name, options: c.options!.find((o) => o.name === s.name)!.options ?? [] })) : [{ sub: undefined, options: c.options ?? [] }];
    for (const { sub, options } of variants) {
      const given = options.map((o) => sent(o, sample(o)));
      const data = sub ? [{ name: sub, type: ApplicationCommandOptionType.Subcommand, options: given } as CommandInteractionOption] : given;
      const input = readCommandOptions(d, data);
      assert.equal(input.subcommand, sub);
      // the adapter downloads attachments and passes them as files under the core's option name
      const files = Object.fromEntries(Object.entries(input.attachments).map(([name, refs]) => [name, refs.map((r) => ({ filename: r.name, bytes: new Uint8Array(1) }))]));
      const values = validateOptions(d, sub, { ...input.values, ...files });
      const described = (d.subcommands?.find((s) => s.name === sub)?.options ?? d.options ?? []);
      for (const o of described) assert.notEqual(values[o.name], undefined, `/${d.name}${sub ? ` ${sub}` : ''} ${o.name} arrived`);
      const attachmentOption = described.find((o) => o.type === 'attachments');
      if (attachmentOption?.type === 'attachments') {
        assert.equal((values[attachmentOption.name] as unknown[]).length, attachmentOption.max, 'every attachment option, in order');
        assert.deepEqual(input.attachments[attachmentOption.name]!.map((r) => r.name), discordOptionNames(attachmentOption).map((n) => `${n}.png`));
      }
    }
  }
});

test('autocomplete: the focused option with its subcommand', () => {
  assert.deepEqual(focusedOption([{ name: 'prompt', type: 3, value: 'a <hu', focused: true } as CommandInteractionOption]), { option: 'prompt', value: 'a <hu' });
  assert.deepEqual(focusedOption([{ name: 'info', type: 1, options: [{ name: 'name', type: 3, value: 'hu', focused: true }] } as CommandInteractionOption]),
    { subcommand: 'info', option: 'name', value: 'hu' });
  assert.equal(focusedOption([{ name: 'prompt', type: 3, value: 'x' } as CommandInteractionOption]), null);
});

test('global commands work in servers and in DMs with the bot; guild commands carry no contexts', () => {
  for (const command of applicationCommands(core, 'global') as Command[]) {
    assert.deepEqual(command.contexts, [0, 1], command.name);
    assert.deepEqual(command.integration_types, [0], command.name);
  }
  for (const command of registered) {
    assert.equal(command.contexts, undefined);
    assert.equal(command.integration_types, undefined);
  }
});

test('the teach modal asks for name and category with /teach\'s limits and names the message in its custom id', () => {
  const teach = core.find((c) => c.name === 'teach')!;
  const modal = teachFromMessageModal('112233445566778899', teach).toJSON() as unknown as {
    custom_id: string; title: string; components: Array<{ type: number; component: { custom_id: string; type: number; min_length?: number; max_length?: number } }>;
  };
  assert.equal(parseTeachModalId(modal.custom_id), '112233445566778899');
  assert.ok(modal.title.length <= 45);
  assert.deepEqual(modal.components.map((c) => [c.type, c.component.type, c.component.custom_id]),
    [[18, 4, TEACH_MODAL_FIELDS.name], [18, 4, TEACH_MODAL_FIELDS.category]]);
  for (const c of modal.components) {
    const o = teach.options!.find((x) => x.name === c.component.custom_id);
    assert.ok(o?.type === 'string', 'each field is a /teach text option');
    assert.deepEqual([c.component.min_length, c.component.max_length], [o.minLength, o.maxLength]);
  }
  assert.equal(parseTeachModalId('teach-msg:abc'), null);
  assert.equal(parseTeachModalId('other:112233445566778899'), null);
});
