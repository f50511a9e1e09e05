// The error a person sees when a model folder cannot be used: what is wrong, where, and what to do.

export class ModelLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelLoadError';
  }
}
