// /imagine: resolve every <name> in the prompt against the scope's concepts, store an imagine job, reply with
// the queue position. The result is a generation whose parameters are stored for info, re-roll and variations.
import type { Command } from '../src/chat/command.ts';
import { DEMO_MODEL_NOTE, jobStateMessage } from '../src/chat/messages.ts';
import type { CommandDescription } from '../src/chat/types.ts';
import { UserError } from '../src/errors.ts';
import { checkPromptText, parsePrompt, unknownConceptMessage, type Mention } from '../src/input/prompt.ts';
import type { ConceptUse, ImagineParams } from '../src/jobs/job-params.ts';
import {
  checkCanSubmit, ensureScope, ensureUser, jobStatus, randomSeed, readyModel, type Requester, type Services, type Submitted,
} from '../src/services.ts';

export const DEFAULT_STEPS = 30;
export const DEFAULT_GUIDANCE = 7.5;
const SCHEDULERS = ['pndm', 'ddim', 'euler', 'dpmpp-2m'];

export const description: CommandDescription = {
  name: 'imagine',
  description: 'Draw an image; use taught concepts as <name> (strength: <name:0.8>)',
  options: [
    { type: 'string', name: 'prompt', description: 'What to draw, e.g. a photo of <hugsy> on the beach', required: true, minLength: 1, maxLength: 500, autocomplete: 'prompt' },
    { type: 'string', name: 'negative', description: 'What to avoid, e.g. blurry, text', maxLength: 500 },
    { type: 'integer', name: 'seed', description: 'Same seed and settings give the same image', min: 0, max: 2147483647 },
    { type: 'integer', name: 'steps', description: 'Denoising steps (default 30)', min: 1, max: 150 },
    { type: 'number', name: 'guidance', description: 'How closely to follow the prompt (default 7.5)', min: 0, max: 30 },
    { type: 'integer', name: 'width', description: 'Width in pixels, a multiple of 8 (default: the model\'s size)', min: 64, max: 1024 },
    { type: 'integer', name: 'height', description: 'Height in pixels, a multiple of 8 (default: the model\'s size)', min: 64, max: 1024 },
    { type: 'number', name: 'strength', description: 'How strongly concepts show, 0–1 (default: each concept\'s own)', min: 0, max: 1 },
  ],
};

export interface ImagineInput {
  prompt: string;
  negative?: string;
  seed?: number;
  steps?: number;
  guidance?: number;
  width?: number;
  height?: number;
  /** for every concept without its own `<name:s>` */
  strength?: number;
  /** per concept name (the HTTP API); `<name:s>` in the prompt wins */
  strengths?: Record<string, number>;
  scheduler?: string;
}

/** Finds each mentioned concept in the scope; every problem is a sentence that says what to do. */
export async function resolveConcepts(s: Services, scopeId: number, mentions: Mention[], modelHash: string, strength?: number, strengths: Record<string, number> = {}): Promise<ConceptUse[]> {
  if (mentions.length === 0) return [];
  const all = await s.db.concept.findMany({ where: { scopeId }, select: { id: true, name: true, status: true, modelHash: true, error: true } });
  return mentions.map((m) => {
    const c = all.find((x) => x.name === m.name);
    if (!c) throw new UserError(unknownConceptMessage(m.name, all.filter((x) => x.status === 'ready').map((x) => x.name)), 404);
    if (c.status === 'training') throw new UserError(`<${m.name}> is still being taught; try again when it is ready (/queue shows its progress).`, 409);
    if (c.status !== 'ready') throw new UserError(`<${m.name}> could not be taught${c.error ? ` (${c.error})` : ''}; teach it again with /teach.`, 409);
    if (c.modelHash && c.modelHash !== modelHash) throw new UserError(`<${m.name}> was taught on a different model than the one this bot uses now; teach it again.`, 409);
    const st = m.strength ?? strengths[m.name] ?? strength ?? null;
    if (st !== null && (!Number.isFinite(st) || st < 0 || st > 1)) throw new UserError(`The strength of <${m.name}> must be from 0 to 1.`);
    return { conceptId: c.id, name: m.name, strength: st };
  });
}

function checkSize(v: number | undefined, fallback: number, what: string): number {
  const n = v ?? fallback;
  if (!Number.isInteger(n) || n < 64 || n > 1024) throw new UserError(`The ${what} must be a whole number of pixels from 64 to 1024.`);
  if (n % 8 !== 0) throw new UserError(`The ${what} must be a multiple of 8 (e.g. ${Math.max(64, Math.round(n / 8) * 8)}); ${n} is not.`);
  return n;
}

/** Validates, stores and queues an imagine job (also used by re-roll and variations). */
export async function submitImagine(s: Services, who: Requester, params: ImagineParams): Promise<Submitted> {
  const [user, scope] = await Promise.all([ensureUser(s.db, who.user), ensureScope(s.db, who.scope)]);
  await checkCanSubmit(s, user.id);
  const job = await s.db.job.create({
    data: { kind: 'imagine', state: 'queued', userId: user.id, scopeId: scope.id, params: JSON.stringify(params), route: JSON.stringify(who.route) },
  });
  s.scheduler.submit(job);
  const status = jobStatus(s, job);
  const model = await s.executor.ready();
  const message = jobStateMessage(status);
  message.text = [message.text, `Seed ${params.seed} · ${params.steps} steps · ${params.width}×${params.height}.`, model.isDemo ? DEMO_MODEL_NOTE : null]
    .filter(Boolean).join('\n');
  return { job, status, message };
}

export async function imagine(s: Services, who: Requester, input: ImagineInput): Promise<Submitted> {
  const parsed = parsePrompt(input.prompt);
  const negative = input.negative === undefined ? null : checkPromptText(input.negative, 'negative prompt') || null;
  const steps = input.steps ?? DEFAULT_STEPS;
  if (!Number.isInteger(steps) || steps < 1 || steps > 150) throw new UserError('Steps must be a whole number from 1 to 150.');
  const guidance = input.guidance ?? DEFAULT_GUIDANCE;
  if (!Number.isFinite(guidance) || guidance < 0 || guidance > 30) throw new UserError('Guidance must be a number from 0 to 30.');
  const seed = input.seed ?? randomSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > 2147483647) throw new UserError('The seed must be a whole number from 0 to 2147483647.');
  if (input.scheduler !== undefined && !SCHEDULERS.includes(input.scheduler)) {
    throw new UserError(`The sampler must be one of ${SCHEDULERS.join(', ')}.`);
  }
  const model = await readyModel(s);
  const width = checkSize(input.width, model.resolution, 'width');
  const height = checkSize(input.height, model.resolution, 'height');
  const scope = await ensureScope(s.db, who.scope);
  const concepts = await resolveConcepts(s, scope.id, parsed.mentions, model.hash, input.strength, input.strengths);
  return submitImagine(s, who, {
    prompt: parsed.text, negativePrompt: negative, seed, steps, guidance, width, height,
    scheduler: input.scheduler ?? null, concepts, parentId: null, variation: null,
  });
}

export const command: Command = {
  description,
  async run(ctx, s) {
    const o = ctx.options;
    const pick = <T>(k: string) => (o[k] === undefined ? {} : { [k]: o[k] as T });
    const { message } = await imagine(s, ctx, {
      prompt: o.prompt as string, ...pick<string>('negative'), ...pick<number>('seed'), ...pick<number>('steps'),
      ...pick<number>('guidance'), ...pick<number>('width'), ...pick<number>('height'), ...pick<number>('strength'),
    });
    await ctx.reply(message);
  },
};
