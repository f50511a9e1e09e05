// BotCore (src/chat/types.ts): runs commands for every front end and delivers job updates to them.
import { parseButtonId } from './chat/buttons.ts';
import type { Command } from './chat/command.ts';
import { generationSummary, jobStatus, loadJob, type Services } from './services.ts';
import { DEMO_MODEL_NOTE, generationButtons, generationText, jobStateMessage, requeuedText, teachDoneText } from './chat/messages.ts';
import type {
  AutocompleteChoice, AutocompleteRequest, BotCore, ButtonPress, CommandContext, CommandDescription, DeliveryRoute,
  JobUpdate, OptionDescription, OptionValue, OutgoingMessage, UpdateSink,
} from './chat/types.ts';
import { INTERNAL_ERROR_MESSAGE, UserError } from './errors.ts';
import type { SchedulerEvent } from './jobs/scheduler.ts';
import { ensureScope } from './services.ts';

function optionsOf(d: CommandDescription, sub?: string): readonly OptionDescription[] | null {
  if (d.subcommands?.length) return d.subcommands.find((s) => s.name === sub)?.options ?? null;
  return d.options ?? [];
}

/** Checks option values against a description; returns them cleaned (strings trimmed). */
export function validateOptions(d: CommandDescription, sub: string | undefined, values: Record<string, OptionValue | undefined>): Record<string, OptionValue | undefined> {
  const opts = optionsOf(d, sub);
  if (!opts) {
    throw new UserError(`/${d.name} needs one of: ${d.subcommands!.map((s) => s.name).join(', ')}.`);
  }
  const out: Record<string, OptionValue | undefined> = {};
  for (const o of opts) {
    let v = values[o.name];
    if (typeof v === 'string') v = v.trim();
    const missing = v === undefined || v === '' || (Array.isArray(v) && v.length === 0);
    if (missing) {
      if (o.required) throw new UserError(o.type === 'attachments' ? `/${d.name} needs ${o.name}: attach ${o.min}–${o.max} files.` : `/${d.name} needs ${o.name}: ${o.description}.`);
      continue;
    }
    switch (o.type) {
      case 'string':
        if (typeof v !== 'string') throw new UserError(`${o.name} must be text.`);
        if (o.minLength !== undefined && v.length < o.minLength) throw new UserError(`${o.name} must be at least ${o.minLength} characters.`);
        if (o.maxLength !== undefined && v.length > o.maxLength) throw new UserError(`${o.name} must be at most ${o.maxLength} characters (it is ${v.length}).`);
        if (o.pattern && !o.pattern.test(v)) throw new UserError(o.patternHint ?? `${o.name} is not in the expected form.`);
        if (o.choices && !o.choices.some((c) => c.value === v)) throw new UserError(`${o.name} must be one of ${o.choices.map((c) => c.value).join(', ')}.`);
        break;
      case 'integer':
      case 'number': {
        const n = typeof v === 'string' ? Number(v) : v;
        if (typeof n !== 'number' || !Number.isFinite(n) || (o.type === 'integer' && !Number.isInteger(n))) {
          throw new UserError(`${o.name} must be a ${o.type === 'integer' ? 'whole ' : ''}number.`);
        }
        if (o.min !== undefined && n < o.min) throw new UserError(`${o.name} must be at least ${o.min}.`);
        if (o.max !== undefined && n > o.max) throw new UserError(`${o.name} must be at most ${o.max}.`);
        v = n;
        break;
      }
      case 'boolean':
        if (typeof v === 'string') v = ['true', 'yes', '1', 'on'].includes(v.toLowerCase());
        if (typeof v !== 'boolean') throw new UserError(`${o.name} must be true or false.`);
        break;
      case 'attachments':
        if (!Array.isArray(v)) throw new UserError(`${o.name} must be files.`);
        if (v.length > o.max) throw new UserError(`You attached ${v.length} files; ${o.name} takes at most ${o.max}.`);
        if (v.length < o.min) throw new UserError(`${o.name} needs at least ${o.min} file${o.min === 1 ? '' : 's'}.`);
        break;
    }
    out[o.name] = v;
  }
  return out;
}

export class Bot implements BotCore {
  readonly commands: readonly CommandDescription[];
  private readonly byName = new Map<string, Command>();
  private readonly sinks = new Set<UpdateSink>();
  /** per job: the delivery chain (updates of one job go out in order) and when progress last went out, per sink */
  private readonly chains = new Map<number, Promise<void>>();
  private readonly lastProgress = new Map<string, number>();
  /** the newest progress/position event held back by the rate limit, sent when the interval has passed */
  private readonly trailing = new Map<number, { ev: SchedulerEvent; timer: NodeJS.Timeout }>();
  /** which platform each job reports to (from its row; a job's route platform never changes) */
  private readonly platforms = new Map<number, string>();

  constructor(private readonly s: Services, commands: readonly Command[]) {
    this.commands = commands.map((c) => c.description);
    for (const c of commands) this.byName.set(c.description.name, c);
    s.scheduler.on('job', (ev) => this.onJobEvent(ev));
  }

  get model() {
    // the model is known once the first worker is ready; before that, say what we will load
    return this.modelInfo ?? { name: this.s.config.modelDir ?? 'built-in demo model', isDemo: this.s.config.modelDir === null, resolution: 512 };
  }
  private modelInfo: { name: string; isDemo: boolean; resolution: number } | null = null;

  /** Resolves once the engine is loaded; the model summary is then known. */
  async engineReady(): Promise<void> {
    const m = await this.s.executor.ready();
    this.modelInfo = { name: m.name, isDemo: m.isDemo, resolution: m.resolution };
  }

  async dispatch(ctx: CommandContext): Promise<void> {
    const log = this.s.log.child({ command: ctx.command, sub: ctx.subcommand, platform: ctx.user.platform, user: ctx.user.externalId });
    try {
      const cmd = this.byName.get(ctx.command);
      if (!cmd) throw new UserError(`There is no /${ctx.command} command. Commands: ${this.commands.map((c) => `/${c.name}`).join(', ')}.`, 404);
      const options = validateOptions(cmd.description, ctx.subcommand, { ...ctx.options });
      await cmd.run({ ...ctx, options }, this.s);
    } catch (err) {
      if (err instanceof UserError) {
        log.info({ reason: err.message }, 'command refused');
        await ctx.reply({ text: err.message, private: true });
      } else {
        log.error({ err }, 'command failed');
        await ctx.reply({ text: INTERNAL_ERROR_MESSAGE, private: true });
      }
    }
  }

  async press(p: ButtonPress): Promise<void> {
    const parsed = parseButtonId(p.id);
    const cmd = parsed && [...this.byName.values()].find((c) => c.description.button?.action === parsed.action);
    if (!parsed || !cmd) {
      await p.reply({ text: 'This button is from an older version of the bot and no longer works; use the command instead.', private: true });
      return;
    }
    await this.dispatch({
      command: cmd.description.name, user: p.user, scope: p.scope, route: p.route, reply: p.reply,
      options: { [cmd.description.button!.option]: parsed.id },
    });
  }

  async autocomplete(req: AutocompleteRequest): Promise<AutocompleteChoice[]> {
    const d = this.byName.get(req.command)?.description;
    const opt = d && optionsOf(d, req.subcommand)?.find((o) => o.name === req.option);
    if (!opt || opt.type !== 'string' || !opt.autocomplete) return [];
    const scope = await ensureScope(this.s.db, req.scope);
    const names = (await this.s.db.concept.findMany({ where: { scopeId: scope.id, status: 'ready' }, select: { name: true }, orderBy: { name: 'asc' } }))
      .map((c) => c.name);
    if (opt.autocomplete === 'concept') {
      const q = req.value.trim().replace(/^</, '').toLowerCase();
      return names.filter((n) => n.includes(q)).sort((a, b) => Number(!a.startsWith(q)) - Number(!b.startsWith(q))).slice(0, 25)
        .map((n) => ({ name: `<${n}>`, value: n }));
    }
    // a prompt: complete the last "<partial" typed
    const m = /<([a-z0-9_-]*)$/i.exec(req.value);
    if (!m) return req.value ? [{ name: req.value.slice(0, 100), value: req.value }] : [];
    const head = req.value.slice(0, m.index);
    return names.filter((n) => n.startsWith(m[1]!.toLowerCase())).slice(0, 25).map((n) => {
      const value = `${head}<${n}>`;
      return { name: value.length > 100 ? `…${value.slice(-99)}` : value, value };
    });
  }

  addSink(sink: UpdateSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  async updateRoute(jobId: number, data: DeliveryRoute['data']): Promise<void> {
    const job = await this.s.db.job.findUnique({ where: { id: jobId }, select: { route: true } });
    if (!job) return;
    const route = JSON.parse(job.route) as DeliveryRoute;
    await this.s.db.job.update({ where: { id: jobId }, data: { route: JSON.stringify({ ...route, data: { ...route.data, ...data } }) } });
  }

  /** Final updates that never reached their platform (the process stopped, the platform was down) go out again. */
  async redeliver(): Promise<void> {
    const since = new Date(Date.now() - 24 * 3600_000);
    const jobs = await this.s.db.job.findMany({
      where: { delivered: false, state: { in: ['succeeded', 'failed', 'cancelled'] }, finishedAt: { gte: since } }, orderBy: { id: 'asc' },
    });
    for (const j of jobs) this.onJobEvent({ type: j.state as 'succeeded' | 'failed' | 'cancelled', jobId: j.id });
  }

  private onJobEvent(ev: SchedulerEvent): void {
    if (this.sinks.size === 0) return;
    if (ev.job) this.platforms.set(ev.jobId, (JSON.parse(ev.job.route) as DeliveryRoute).platform);
    const final = ev.type === 'succeeded' || ev.type === 'failed' || ev.type === 'cancelled';
    if (!final) {
      // drop what no sink would send now, before touching the database
      const frequent = ev.type === 'progress' || ev.type === 'position';
      const platform = this.platforms.get(ev.jobId);
      const now = Date.now();
      const waits = [...this.sinks].flatMap((k, i) => ((platform === undefined || k.platform === platform) && (!k.wants || k.wants(ev.jobId))
        ? [frequent ? (this.lastProgress.get(`${ev.jobId}:${k.platform}:${i}`) ?? 0) + (k.progressIntervalMs ?? this.s.config.progressIntervalMs) - now : 0]
        : []));
      if (!waits.some((w) => w <= 0)) {
        // too soon after the last one: keep the newest and send it when the interval has passed, so a pause
        // after a burst of steps does not leave a stale step on screen
        if (frequent && waits.length) this.holdBack(ev, Math.min(...waits));
        return;
      }
    }
    const held = this.trailing.get(ev.jobId);
    if (held) { clearTimeout(held.timer); this.trailing.delete(ev.jobId); }
    const prev = this.chains.get(ev.jobId) ?? Promise.resolve();
    const next = prev.then(() => this.deliver(ev)).catch((err) => this.s.log.warn({ err, jobId: ev.jobId }, 'job update not delivered'));
    this.chains.set(ev.jobId, next);
    void next.then(() => { if (this.chains.get(ev.jobId) === next) this.chains.delete(ev.jobId); });
  }

  private holdBack(ev: SchedulerEvent, waitMs: number): void {
    const held = this.trailing.get(ev.jobId);
    if (held) { held.ev = ev; return; }
    const timer = setTimeout(() => {
      const latest = this.trailing.get(ev.jobId);
      this.trailing.delete(ev.jobId);
      if (latest) this.onJobEvent(latest.ev);
    }, Math.max(1, waitMs) + 5);
    timer.unref();
    this.trailing.set(ev.jobId, { ev, timer });
  }

  private async deliver(ev: SchedulerEvent): Promise<void> {
    const final = ev.type === 'succeeded' || ev.type === 'failed' || ev.type === 'cancelled';
    const row = await loadJob(this.s, ev.jobId);
    if (!row) return;
    const route = JSON.parse(row.route) as DeliveryRoute;
    const sinks = [...this.sinks].filter((k) => k.platform === route.platform);
    if (sinks.length === 0) return;
    if (!final && (row.state === 'succeeded' || row.state === 'failed' || row.state === 'cancelled')) return; // stale
    const now = Date.now();
    const due = sinks.filter((k) => {
      if (!final && k.wants && !k.wants(ev.jobId)) return false;
      if (ev.type !== 'progress' && ev.type !== 'position') return true;
      const key = `${ev.jobId}:${k.platform}:${[...this.sinks].indexOf(k)}`;
      const last = this.lastProgress.get(key) ?? 0;
      if (now - last < (k.progressIntervalMs ?? this.s.config.progressIntervalMs)) return false;
      this.lastProgress.set(key, now);
      return true;
    });
    if (due.length === 0) return;
    const status = jobStatus(this.s, row);
    const update: JobUpdate = {
      event: ev.type, job: status, route, final,
      user: { platform: row.user.platform as JobUpdate['user']['platform'], externalId: row.user.externalId, displayName: row.user.displayName },
      message: await this.render(ev, status, row.generation?.id ?? null),
    };
    const results = await Promise.allSettled(due.map((k) => k.deliver(update)));
    for (const r of results) if (r.status === 'rejected') this.s.log.warn({ err: r.reason, jobId: ev.jobId }, 'a chat front end could not deliver a job update');
    if (final) {
      this.platforms.delete(ev.jobId);
      for (const k of this.lastProgress.keys()) if (k.startsWith(`${ev.jobId}:`)) this.lastProgress.delete(k);
      if (results.every((r) => r.status === 'fulfilled')) await this.s.db.job.update({ where: { id: ev.jobId }, data: { delivered: true } });
    }
  }

  /** The message for a job event, with the result when it succeeded. */
  async render(ev: Pick<SchedulerEvent, 'type'>, status: ReturnType<typeof jobStatus>, generationId: number | null): Promise<OutgoingMessage> {
    if (ev.type === 'requeued') return { jobId: status.id, text: requeuedText(status) };
    if (status.state !== 'succeeded') return jobStateMessage(status);
    if (status.kind === 'teach') {
      const c = status.concept ? await this.s.db.concept.findFirst({ where: { jobs: { some: { id: status.id } } } }) : null;
      return { jobId: status.id, text: teachDoneText(status.concept ?? '?', c?.category ?? '?', c?.steps ?? 0, c?.finalLoss ?? null) };
    }
    const g = generationId === null ? null : await this.s.db.generation.findUnique({ where: { id: generationId } });
    if (!g) return { jobId: status.id, text: `✅ Job #${status.id} is done.` };
    const demo = this.modelInfo?.isDemo ? `\n${DEMO_MODEL_NOTE}` : '';
    return {
      jobId: status.id,
      text: generationText(generationSummary(g)) + demo,
      images: [{ filename: `image-${g.id}.png`, png: g.png, width: g.width, height: g.height, generationId: g.id }],
      buttons: generationButtons(g.id),
    };
  }
}
