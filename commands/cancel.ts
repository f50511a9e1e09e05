// /cancel: stop a queued or running job (yours, or any here if you are an admin). Button: cancel:<jobId>.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'cancel',
  description: 'Cancel a waiting or running job (default: your latest)',
  options: [{ type: 'integer', name: 'job', description: 'The job number', min: 1 }],
  button: { action: 'cancel', option: 'job' },
};
