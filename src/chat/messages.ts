// Everything the bot says about jobs, in one place, so Discord, Slack and the local chat use the same words.
import { buttonId } from './buttons.ts';
import type { ChatButton, JobStatus, OutgoingMessage } from './types.ts';

/** Escapes markdown and neutralises mass mentions in text people wrote (prompts, names). */
export function escapeChatText(s: string): string {
  return s.replace(/[\\*_`~|]/g, (c) => `\\${c}`).replace(/@(everyone|here|channel)/gi, '@\u200b$1');
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 10) return 'a few seconds';
  if (s < 60) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

export const DEMO_MODEL_NOTE =
  'This bot runs the built-in demo model (tiny random weights): images are noise, but every command works. The host can set MODEL_DIR to real Stable Diffusion 1.5 weights.';

function eta(job: JobStatus): string {
  return job.etaMs === null ? '' : ` · about ${formatDuration(job.etaMs)} left`;
}

function what(job: JobStatus): string {
  return job.kind === 'teach' ? `Teaching <${job.concept ?? '?'}>` : 'Drawing';
}

export function queuedText(job: JobStatus): string {
  const pos = job.position === null ? '' : job.position === 1 ? ', next in line' : `, position ${job.position} in the queue`;
  return `⏳ ${what(job)} — job #${job.id} is queued${pos}${eta(job)}.`;
}

export function progressText(job: JobStatus): string {
  const p = job.progress;
  if (!p) return `⚙️ ${what(job)} — job #${job.id} is starting${eta(job)}.`;
  const pct = Math.floor((100 * p.step) / Math.max(1, p.total));
  const loss = p.loss === undefined ? '' : ` · loss ${p.loss.toFixed(3)}`;
  return `⚙️ ${what(job)} — step ${p.step}/${p.total} (${pct}%)${loss}${eta(job)}.`;
}

export function requeuedText(job: JobStatus): string {
  const resume = job.kind === 'teach' ? ' It continues from its last checkpoint.' : '';
  return `🔁 Job #${job.id} was interrupted (the bot restarted or its GPU worker stopped) and is back in the queue${job.position ? `, position ${job.position}` : ''}.${resume}`;
}

export function failedText(job: JobStatus): string {
  return `❌ Job #${job.id} failed: ${job.error ?? 'unknown error.'}`;
}

export function cancelledText(job: JobStatus): string {
  return job.kind === 'teach'
    ? `🛑 Job #${job.id} was cancelled; <${job.concept ?? '?'}> was not taught and its name is free again.`
    : `🛑 Job #${job.id} was cancelled.`;
}

export function teachDoneText(concept: string, category: string, steps: number, loss: number | null): string {
  const l = loss === null ? '' : `, final loss ${loss.toFixed(3)}`;
  return `✅ <${concept}> (a ${category}) is ready after ${steps} training steps${l}. Use it in a prompt: /imagine a photo of <${concept}> on the beach`;
}

export interface GenerationSummary {
  id: number;
  prompt: string;
  negativePrompt: string | null;
  seed: number;
  steps: number;
  guidance: number;
  scheduler: string;
  width: number;
  height: number;
  concepts: { name: string; strength: number | null }[];
  parentId: number | null;
  variationAmount: number | null;
  modelName: string;
  durationMs: number;
  /** what the person should know about how it was made (one note per line), e.g. a prompt cut short */
  notes: string | null;
}

function noteLines(g: GenerationSummary): string {
  return g.notes ? g.notes.split('\n').map((n) => `\n⚠️ ${escapeChatText(n)}`).join('') : '';
}

export function generationText(g: GenerationSummary): string {
  const concepts = g.concepts.length
    ? ` · concepts ${g.concepts.map((c) => `<${c.name}>${c.strength === null ? '' : ` ${c.strength}`}`).join(', ')}`
    : '';
  const parent = g.parentId === null ? '' : g.variationAmount === null ? ` · re-roll of #${g.parentId}` : ` · variation of #${g.parentId} (${g.variationAmount})`;
  return `🖼️ Image #${g.id}: “${escapeChatText(g.prompt)}” · seed ${g.seed} · ${g.steps} steps · guidance ${g.guidance}${concepts}${parent}${noteLines(g)}`;
}

export function generationInfoText(g: GenerationSummary): string {
  return [
    `Image #${g.id}`,
    `prompt: ${escapeChatText(g.prompt)}`,
    g.negativePrompt ? `negative: ${escapeChatText(g.negativePrompt)}` : null,
    `seed ${g.seed} · ${g.steps} steps · guidance ${g.guidance} · sampler ${g.scheduler} · ${g.width}×${g.height}`,
    g.concepts.length ? `concepts: ${g.concepts.map((c) => `<${c.name}> strength ${c.strength ?? 'default'}`).join(', ')}` : null,
    g.parentId === null ? null : g.variationAmount === null ? `re-roll of #${g.parentId}` : `variation of #${g.parentId}, amount ${g.variationAmount}`,
    `model ${g.modelName} · took ${formatDuration(g.durationMs)}`,
  ].filter(Boolean).join('\n') + noteLines(g);
}

/** The buttons under a finished image: re-roll, variations, info, delete (the requester or an admin). */
export function generationButtons(generationId: number): ChatButton[] {
  return [
    { id: buttonId('reroll', generationId), label: 'Re-roll', style: 'primary' },
    { id: buttonId('vary', generationId), label: 'Variations' },
    { id: buttonId('info', generationId), label: 'Info' },
    { id: buttonId('delete', generationId), label: 'Delete', style: 'danger' },
  ];
}

/** The message for a job's current state (not for success, which carries its result). */
export function jobStateMessage(job: JobStatus): OutgoingMessage {
  const base = { jobId: job.id };
  switch (job.state) {
    case 'queued': return { ...base, text: queuedText(job), buttons: [{ id: `cancel:${job.id}`, label: 'Cancel', style: 'danger' }] };
    case 'running': return { ...base, text: progressText(job), buttons: [{ id: `cancel:${job.id}`, label: 'Cancel', style: 'danger' }] };
    case 'failed': return { ...base, text: failedText(job) };
    case 'cancelled': return { ...base, text: cancelledText(job) };
    case 'succeeded': return { ...base, text: `✅ Job #${job.id} is done.` };
  }
}
