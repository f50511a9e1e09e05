// Typed commands → command name, subcommand and options, for front ends where people type text (the local
// chat; Slack's slash commands carry text too): `/imagine a red car seed:42 steps:20`,
// `/teach hugsy teddy steps:200`, `/concepts delete hugsy`, `/info 12`.
// `option:value` pairs (value quoted if it has spaces) set named options; the remaining words fill the
// required options in order, the last one taking the rest of the text (so a prompt needs no quotes).
import type { CommandDescription, OptionDescription } from './types.ts';
import { UserError } from '../errors.ts';

export interface ParsedText {
  command: string;
  subcommand?: string;
  options: Record<string, string>;
}

export function parseCommandText(text: string, commands: readonly CommandDescription[]): ParsedText {
  const m = /^\s*\/?([a-z]+)\s*([\s\S]*)$/i.exec(text);
  if (!m) throw new UserError('Type a command, e.g. /imagine a photo of a cat');
  const name = m[1]!.toLowerCase();
  const d = commands.find((c) => c.name === name);
  if (!d) throw new UserError(`There is no /${name} command. Commands: ${commands.map((c) => `/${c.name}`).join(', ')}.`, 404);
  let rest = m[2]!;
  let subcommand: string | undefined;
  let opts: readonly OptionDescription[] = d.options ?? [];
  if (d.subcommands?.length) {
    const sm = /^(\S+)\s*([\s\S]*)$/.exec(rest);
    const sub = d.subcommands.find((s) => s.name === sm?.[1]?.toLowerCase());
    if (!sub) throw new UserError(`/${name} needs one of: ${d.subcommands.map((s) => s.name).join(', ')} (e.g. /${name} ${d.subcommands[0]!.name}).`);
    subcommand = sub.name;
    opts = sub.options;
    rest = sm![2]!;
  }
  const options: Record<string, string> = {};
  const names = opts.filter((o) => o.type !== 'attachments').map((o) => o.name);
  if (names.length) {
    const pair = new RegExp(`(?:^|\\s)(${names.join('|')}):(?:"([^"]*)"|(\\S+))`, 'gi');
    rest = rest.replace(pair, (_all, key: string, quoted?: string, bare?: string) => {
      options[key.toLowerCase()] = quoted ?? bare ?? '';
      return ' ';
    });
  }
  const positional = opts.filter((o) => o.type !== 'attachments' && options[o.name] === undefined && o.required);
  const words = rest.trim();
  if (words && positional.length === 0) {
    const optional = opts.find((o) => o.type !== 'attachments' && options[o.name] === undefined);
    if (optional) options[optional.name] = words;
    else throw new UserError(`/${name}${subcommand ? ` ${subcommand}` : ''} takes no text "${words.slice(0, 40)}".`);
  } else if (words) {
    let left = words;
    positional.forEach((o, i) => {
      if (!left) return;
      if (i === positional.length - 1) { options[o.name] = left; left = ''; return; }
      const wm = /^(\S+)\s*([\s\S]*)$/.exec(left)!;
      options[o.name] = wm[1]!;
      left = wm[2]!;
    });
  }
  return { command: name, ...(subcommand ? { subcommand } : {}), options };
}
