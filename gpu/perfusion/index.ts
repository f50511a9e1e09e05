// Perfusion (perfusion-spec.md): the gated rank-1 edit, concepts as artifacts, the covariance C, teaching.
export { editProjection, PreparedConcepts, PreparedProjection } from './edit.ts';
export type { ConceptGate, EditConcept, Projection } from './edit.ts';
export {
  checkCompatible, CONCEPT_FORMAT_VERSION, ConceptCompatibilityError, ConceptFormatError, conceptPayloadFloats,
  parseConcept, serializeConcept,
} from './artifact.ts';
export type { ConceptTarget } from './artifact.ts';
export {
  cachedCovariance, CovarianceAccumulator, covarianceCacheFile, CovarianceError, covarianceHash, DEFAULT_RIDGE,
  estimateCovariance, finishCovariance, readCovarianceCache, writeCovarianceCache,
} from './covariance.ts';
export type { Covariance, EncodedBatch, EncodePrompts, EstimateOptions } from './covariance.ts';
export { buildPromptCorpus, CORPUS_VERSION, corpusDescription, DEFAULT_CORPUS_PROMPTS, MAX_CORPUS_PROMPTS } from './corpus.ts';
export {
  DEFAULT_BETA, DEFAULT_TAU, ISTAR_DECAY, PerfusionEdit, PerfusionTrainingEdit, TRAINING_BETA, TRAINING_TAU,
} from './perfusion-edit.ts';
export type { EditModel, PerfusionEditOptions, TrainingEditOptions, TrainingState } from './perfusion-edit.ts';
export {
  closestNames, CONCEPT_NAME, ConceptPromptError, embeddingOverrides, findConceptMentions, prepareConceptPrompt,
  UnknownConceptError,
} from './prompt.ts';
export type { ConceptMention, ConceptPrompt, EncodeText } from './prompt.ts';
export { corpusSizeFor, createPerfusionConditioner, defaultPerfusionCacheDir, modelCovariance } from './conditioner.ts';
export type { CovarianceOptions, PerfusionConditionerOptions, PerfusionPipeline } from './conditioner.ts';
export {
  ConceptError, DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_EVERY, DEFAULT_EFFECTIVE_BATCH, DEFAULT_TEACH_STEPS, drawStep,
  EMBEDDING_LEARNING_RATE, isOutOfMemoryError, MAX_TEACH_IMAGES, MAX_TEACH_STEPS, MIN_IMAGE_SIDE, teachConcept,
  TRAINING_TEMPLATES, VALUE_LEARNING_RATE,
} from './teach.ts';
export type { DrawShape, Sample, StepDraw, TeachHooks, TeachImage, TeachProgress, TeachRequest, TeachResult } from './teach.ts';
export { CHECKPOINT_VERSION, CheckpointFormatError, parseCheckpoint, serializeCheckpoint } from './checkpoint.ts';
export type { CheckpointIdentity, TrainingCheckpoint } from './checkpoint.ts';
export { AdamW, ADAMW_DEFAULTS } from './adamw.ts';
export type { AdamWOptions, AdamWState, ParameterGroup } from './adamw.ts';
export { centreSquare, latentMask, squareResize, vaeInput } from './images.ts';
export type { RasterImage } from './images.ts';
