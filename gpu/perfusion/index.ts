// Perfusion (perfusion-spec.md): the gated rank-1 edit, concepts as artifacts, the covariance C.
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
export { corpusSizeFor, createPerfusionConditioner, modelCovariance } from './conditioner.ts';
export type { CovarianceOptions, PerfusionConditionerOptions, PerfusionPipeline } from './conditioner.ts';
