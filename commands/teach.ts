// /teach: store a concept draft, its checked images and a training job in one transaction; reply with the
// queue position. The scheduler trains it (Perfusion) and the concept becomes usable as <name> in the scope.
import type { Command } from '../src/chat/command.ts';
import { DEMO_MODEL_NOTE, escapeChatText, jobStateMessage } from '../src/chat/messages.ts';
import type { Attachment, CommandDescription } from '../src/chat/types.ts';
import { UserError } from '../src/errors.ts';
import { checkTeachImages, RECOMMENDED_IMAGES, MAX_IMAGES } from '../src/input/images.ts';
import { CONCEPT_NAME } from '../src/input/prompt.ts';
import type { TeachParams } from '../src/jobs/job-params.ts';
import type { Concept } from '../src/store/prisma.ts';
import {
  checkCanSubmit, ensureScope, ensureUser, jobStatus, randomSeed, readyModel, type Requester, type Services, type Submitted,
} from '../src/services.ts';

export const description: CommandDescription = {
  name: 'teach',
  description: 'Teach the bot a new concept from 1–10 of your images (3–10 work best)',
  options: [
    { type: 'string', name: 'name', description: 'How prompts will call it, as <name>: 2–32 of a-z 0-9 _ -', required: true, minLength: 2, maxLength: 32 },
    { type: 'string', name: 'category', description: 'One word for what kind of thing it is: dog, teddy, mug, person…', required: true, minLength: 2, maxLength: 24 },
    { type: 'attachments', name: 'images', description: 'Photos of the concept (PNG, JPEG, WebP; 10 MB each)', required: true, min: 1, max: 10, recommended: { min: 3, max: 10 } },
    { type: 'integer', name: 'steps', description: 'Training steps (more is slower and closer to your images)', min: 10, max: 2000 },
  ],
};

export interface TeachInput {
  name: string;
  category: string;
  images: readonly Attachment[];
  steps?: number;
}

/**
 * Perfusion's 400 steps for a real model; the built-in demo model (random weights, nothing to learn) gets a
 * short run so a newcomer sees the whole flow in about a minute on the CPU.
 */
export function defaultTeachSteps(isDemoModel: boolean): number {
  return isDemoModel ? 30 : 400;
}

export function normalizeConceptName(raw: string): string {
  const name = raw.trim().replace(/^<|>$/g, '').toLowerCase();
  if (!CONCEPT_NAME.test(name)) {
    throw new UserError(`"${escapeChatText(raw.slice(0, 40))}" cannot be a concept name: use 2–32 characters of lowercase letters, digits, _ and -, e.g. hugsy or red-mug.`);
  }
  return name;
}

export async function teach(s: Services, who: Requester, input: TeachInput): Promise<Submitted & { concept: Concept }> {
  const name = normalizeConceptName(input.name);
  const category = input.category.trim().toLowerCase();
  if (!/^[a-z]{2,24}$/.test(category)) {
    throw new UserError(`The category must be one plain word of 2–24 letters for what the concept is (dog, teddy, mug, person), not "${escapeChatText(input.category.slice(0, 40))}".`);
  }
  const model = await readyModel(s);
  const steps = input.steps ?? s.config.teachSteps ?? defaultTeachSteps(model.isDemo);
  if (!Number.isInteger(steps) || steps < 10 || steps > 2000) throw new UserError('Training steps must be a whole number from 10 to 2000.');
  const images = await checkTeachImages(input.images);
  const categoryProblem = await s.executor.checkCategory(category);
  if (categoryProblem) throw new UserError(categoryProblem);

  const user = await ensureUser(s.db, who.user);
  const scope = await ensureScope(s.db, who.scope);
  await checkCanSubmit(s, user.id);
  const existing = await s.db.concept.findUnique({ where: { scopeId_name: { scopeId: scope.id, name } }, include: { owner: true } });
  if (existing) {
    const mayReplace = existing.status === 'failed' && (existing.ownerId === user.id || who.user.isAdmin);
    if (!mayReplace) {
      const state = existing.status === 'training' ? 'is being taught' : existing.status === 'failed' ? 'failed to train' : 'already exists';
      throw new UserError(`<${name}> ${state} here (taught by ${escapeChatText(existing.owner.displayName)}). Pick another name${existing.ownerId === user.id ? `, or delete it first with /concepts delete name:${name}` : ''}.`, 409);
    }
  }

  const params: TeachParams = { name, category, steps, seed: randomSeed(), imageCount: images.length };
  const { job, concept } = await s.db.$transaction(async (tx) => {
    if (existing) await tx.concept.delete({ where: { id: existing.id } });
    const concept = await tx.concept.create({ data: { scopeId: scope.id, name, category, ownerId: user.id, status: 'training' } });
    for (const [position, img] of images.entries()) {
      await tx.conceptImage.create({
        data: { conceptId: concept.id, position, filename: img.filename, width: img.width, height: img.height, sha256: img.sha256, png: img.png },
      });
    }
    const job = await tx.job.create({
      data: { kind: 'teach', state: 'queued', userId: user.id, scopeId: scope.id, conceptId: concept.id, params: JSON.stringify(params), route: JSON.stringify(who.route) },
    });
    return { job, concept };
  });
  s.scheduler.submit(job);
  const status = jobStatus(s, job);
  const notes = [
    images.length < RECOMMENDED_IMAGES ? `Tip: ${RECOMMENDED_IMAGES}–${MAX_IMAGES} images from different angles work best; you sent ${images.length}.` : null,
    model.isDemo ? DEMO_MODEL_NOTE : null,
  ].filter(Boolean);
  const message = jobStateMessage(status);
  message.text = [`📚 <${name}> (a ${category}) will learn from ${images.length} image${images.length === 1 ? '' : 's'} in ${steps} steps.`, message.text, ...notes].join('\n');
  return { job, concept, status, message };
}

export const command: Command = {
  description,
  async run(ctx, s) {
    const o = ctx.options;
    const { message } = await teach(s, ctx, {
      name: o.name as string, category: o.category as string, images: (o.images as Attachment[] | undefined) ?? [],
      ...(o.steps === undefined ? {} : { steps: o.steps as number }),
    });
    await ctx.reply(message);
  },
};
