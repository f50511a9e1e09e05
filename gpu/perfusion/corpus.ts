// The built-in prompt corpus C is estimated from (perfusion-spec.md §2.5): C only has to capture the second
// moment of typical prompt encodings, so templated prompts stand in for LAION captions. Subjects × attributes ×
// actions × scenes × styles × media in a dozen shapes, from a bare noun to long comma-separated captions, many
// of them "a photo of …". Deterministic: the same count always gives the same prompts in the same order, so the
// same model and backend give the same C.

const SUBJECTS = [
  'dog', 'cat', 'puppy', 'kitten', 'horse', 'cow', 'sheep', 'goat', 'rabbit', 'fox', 'wolf', 'bear', 'lion', 'tiger',
  'elephant', 'giraffe', 'zebra', 'monkey', 'owl', 'eagle', 'parrot', 'duck', 'swan', 'penguin', 'dolphin', 'whale',
  'turtle', 'frog', 'butterfly', 'bee', 'man', 'woman', 'child', 'girl', 'boy', 'old man', 'old woman', 'baby',
  'astronaut', 'knight', 'wizard', 'chef', 'soldier', 'dancer', 'musician', 'farmer', 'robot', 'dragon', 'unicorn',
  'car', 'truck', 'bicycle', 'motorcycle', 'train', 'airplane', 'boat', 'sailboat', 'bus', 'tractor', 'house',
  'castle', 'cabin', 'lighthouse', 'bridge', 'tower', 'church', 'windmill', 'tree', 'flower', 'rose', 'sunflower',
  'mountain', 'lake', 'river', 'waterfall', 'forest', 'city', 'street', 'village', 'garden', 'teddy bear', 'toy',
  'doll', 'mug', 'teapot', 'vase', 'chair', 'table', 'lamp', 'clock', 'guitar', 'piano', 'violin', 'book', 'backpack',
  'sneaker', 'hat', 'dress', 'jacket', 'bowl of fruit', 'cake', 'pizza', 'burger', 'cup of coffee', 'bottle', 'candle',
];

const ATTRIBUTES = [
  'red', 'blue', 'green', 'yellow', 'black', 'white', 'golden', 'silver', 'pink', 'purple', 'orange', 'brown',
  'small', 'tiny', 'big', 'giant', 'old', 'ancient', 'new', 'shiny', 'rusty', 'wooden', 'metal', 'glass', 'plastic',
  'fluffy', 'furry', 'wet', 'happy', 'sad', 'sleepy', 'angry', 'cute', 'beautiful', 'ugly', 'colorful', 'striped',
  'spotted', 'vintage', 'futuristic', 'broken', 'glowing',
];

const ACTIONS = [
  'sitting', 'standing', 'running', 'jumping', 'sleeping', 'walking', 'flying', 'swimming', 'playing', 'dancing',
  'reading a book', 'eating', 'looking at the camera', 'waiting', 'resting', 'hiding', 'floating', 'lying down',
  'climbing', 'smiling',
];

const SCENES = [
  'on the beach', 'in the forest', 'in a garden', 'on a table', 'in the snow', 'in the rain', 'at sunset', 'at night',
  'in a city street', 'in a kitchen', 'in a living room', 'on a mountain', 'by a lake', 'in the desert', 'in space',
  'underwater', 'in a field of flowers', 'on a wooden floor', 'in front of a brick wall', 'on the moon', 'in a park',
  'on a bed', 'in a museum', 'on a boat', 'in the jungle', 'on a rooftop', 'in a library', 'at the train station',
  'in a cafe', 'on a white background', 'in the fog', 'under a tree', 'next to a window', 'in a cave', 'on the grass',
  'in a market', 'on a snowy road', 'in an old temple', 'on a sofa', 'in the mountains at dawn',
];

const STYLES = [
  'oil painting', 'watercolor', 'pencil sketch', 'digital art', 'anime style', 'pixel art', '3d render',
  'studio photograph', 'film photograph', 'polaroid', 'black and white photo', 'impressionist painting',
  'cubist painting', 'pop art', 'concept art', 'comic book style', 'low poly', 'claymation', 'vector illustration',
  'ukiyo-e woodblock print', 'charcoal drawing', 'cinematic still', 'art nouveau poster', 'mosaic', 'stained glass',
  'graffiti', 'children\'s book illustration', 'surrealist painting', 'renaissance painting', 'isometric illustration',
];

const MEDIA = [
  'a photo', 'a close-up photo', 'a painting', 'a drawing', 'an illustration', 'a picture', 'a rendering',
  'a cropped photo', 'a bright photo', 'a dark photo', 'a blurry photo', 'a good photo', 'a sculpture', 'a poster',
];

const DETAILS = [
  'highly detailed', 'soft lighting', 'dramatic lighting', 'golden hour', '4k', 'sharp focus', 'bokeh',
  'wide angle', 'trending on artstation', 'high contrast', 'pastel colors', 'muted colors', 'volumetric light',
  'award winning', 'shallow depth of field', 'symmetrical composition',
];

type Pick = <T>(list: readonly T[]) => T;

/** The shapes of the prompts: short and long, many of them captions of photos. */
const TEMPLATES: Array<(pick: Pick) => string> = [
  (p) => withArticle(p(SUBJECTS)),
  (p) => `${p(ATTRIBUTES)} ${p(SUBJECTS)}`,
  (p) => `${p(SUBJECTS)} ${p(ACTIONS)}`,
  (p) => `a photo of ${withArticle(`${p(ATTRIBUTES)} ${p(SUBJECTS)}`)}`,
  (p) => `a photo of the ${p(SUBJECTS)} ${p(SCENES)}`,
  (p) => `${p(MEDIA)} of ${withArticle(p(SUBJECTS))} ${p(ACTIONS)} ${p(SCENES)}`,
  (p) => `${withArticle(`${p(ATTRIBUTES)} ${p(SUBJECTS)}`)} ${p(ACTIONS)} ${p(SCENES)}`,
  (p) => `${withArticle(p(SUBJECTS))} ${p(SCENES)}, ${p(STYLES)}`,
  (p) => `${p(STYLES)} of ${withArticle(`${p(ATTRIBUTES)} ${p(SUBJECTS)}`)}`,
  (p) => `${withArticle(`${p(ATTRIBUTES)} ${p(SUBJECTS)}`)} and ${withArticle(p(SUBJECTS))} ${p(SCENES)}`,
  (p) => `${p(MEDIA)} of ${withArticle(`${p(ATTRIBUTES)} ${p(ATTRIBUTES)} ${p(SUBJECTS)}`)} ${p(ACTIONS)} ${p(SCENES)}, ${p(STYLES)}, ${p(DETAILS)}, ${p(DETAILS)}`,
  (p) => `${p(SUBJECTS)}, ${p(STYLES)}, ${p(DETAILS)}`,
  (p) => `a photo of my ${p(SUBJECTS)}`,
  (p) => `the ${p(ATTRIBUTES)} ${p(SUBJECTS)} is ${p(ACTIONS)} ${p(SCENES)} while ${withArticle(p(SUBJECTS))} watches, ${p(STYLES)}, ${p(DETAILS)}`,
];

/** The most prompts the built-in corpus offers (all distinct). */
export const MAX_CORPUS_PROMPTS = 100_000;
/** The size used for a full-size model such as SD 1.5 (spec §2.5: 10k–100k). */
export const DEFAULT_CORPUS_PROMPTS = 10_000;
/** Bump when the corpus changes: a different corpus gives a different C. */
export const CORPUS_VERSION = 1;

/** The first `count` prompts of the built-in corpus, all distinct. */
export function buildPromptCorpus(count: number): string[] {
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_CORPUS_PROMPTS) {
    throw new RangeError(`the built-in corpus offers 1..${MAX_CORPUS_PROMPTS} prompts, not ${count}`);
  }
  const random = mulberry32(0x5eed + CORPUS_VERSION);
  const pick: Pick = (list) => list[Math.floor(random() * list.length)]!;
  const seen = new Set<string>();
  const prompts: string[] = [];
  // the short shapes run out of fresh combinations first; the long ones never do in practice
  for (let i = 0; prompts.length < count; i++) {
    const prompt = TEMPLATES[i % TEMPLATES.length]!(pick);
    if (seen.has(prompt)) continue;
    seen.add(prompt);
    prompts.push(prompt);
  }
  return prompts;
}

export function corpusDescription(count: number): string {
  return `built-in corpus v${CORPUS_VERSION}, ${count} prompts`;
}

function withArticle(phrase: string): string {
  return `${/^(?:[aeio]|u(?!ni))/.test(phrase) ? 'an' : 'a'} ${phrase}`;
}

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
