// /concepts list | info | delete: the concepts taught in this scope. Deleting needs the owner or an admin.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'concepts',
  description: 'List, inspect or delete the concepts taught here',
  subcommands: [
    { name: 'list', description: 'The concepts you can use here', options: [] },
    {
      name: 'info', description: 'Who taught a concept, when, and how',
      options: [{ type: 'string', name: 'name', description: 'The concept', required: true, maxLength: 32, autocomplete: 'concept' }],
    },
    {
      name: 'delete', description: 'Delete a concept you taught (admins: any concept here)',
      options: [{ type: 'string', name: 'name', description: 'The concept', required: true, maxLength: 32, autocomplete: 'concept' }],
    },
  ],
};
