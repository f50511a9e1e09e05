// The schedulers by the names the engine contract uses (GenerateRequest.scheduler), built from the model's
// scheduler config.
import type { SchedulerConfig } from '../model/configs.ts';
import type { SchedulerName } from '../types.ts';
import { type Scheduler, SchedulerError } from './common.ts';
import { DDIMScheduler } from './ddim.ts';
import { DPMSolverMultistepScheduler } from './dpmpp-2m.ts';
import { EulerDiscreteScheduler } from './euler.ts';
import { PNDMScheduler } from './pndm.ts';

export type { Scheduler } from './common.ts';
export { SchedulerError } from './common.ts';
export { DDPMScheduler } from './ddpm.ts';

const FACTORIES: Record<SchedulerName, (config: SchedulerConfig) => Scheduler> = {
  pndm: (config) => new PNDMScheduler(config),
  ddim: (config) => new DDIMScheduler(config),
  euler: (config) => new EulerDiscreteScheduler(config),
  'dpmpp-2m': (config) => new DPMSolverMultistepScheduler(config),
};

export const SCHEDULER_NAMES = Object.keys(FACTORIES) as SchedulerName[];

/** diffusers class names of the schedulers a model's config may name, by our names */
const CLASS_NAMES: Record<string, SchedulerName> = {
  PNDMScheduler: 'pndm',
  DDIMScheduler: 'ddim',
  EulerDiscreteScheduler: 'euler',
  DPMSolverMultistepScheduler: 'dpmpp-2m',
};

export function isSchedulerName(name: string): name is SchedulerName {
  return Object.hasOwn(FACTORIES, name);
}

export function createScheduler(name: string, config: SchedulerConfig): Scheduler {
  if (!isSchedulerName(name)) {
    throw new SchedulerError(`unknown scheduler "${name}"; choose one of ${SCHEDULER_NAMES.join(', ')}`);
  }
  return FACTORIES[name](config);
}

/**
 * The scheduler the model's config names (`_class_name`), or DDIM when it names one this engine does not
 * have (e.g. LMSDiscreteScheduler): DDIM works with every SD 1.x config.
 */
export function defaultSchedulerName(config: SchedulerConfig): SchedulerName {
  return CLASS_NAMES[config.className] ?? 'ddim';
}
