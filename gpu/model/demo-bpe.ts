// The built-in demo model's tokenizer files, made rather than downloaded: a CLIP-format byte-level BPE
// vocabulary learnt deterministically from a built-in list of prompt words. Like CLIP's, the vocabulary
// starts with the 256 byte symbols and the same 256 with the end-of-word mark `</w>`, so any text
// tokenizes; then one token per learnt merge; then <|startoftext|> and <|endoftext|>. Merging continues
// until every listed word is a single token, so everyday words (dog, mug, teddy…) work as Perfusion
// category words on the demo model.

const END_OF_WORD = '</w>';

/** GPT-2/CLIP's reversible byte → printable-character map, in CLIP's vocabulary order. */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCodePoint(b));
  let next = 256;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) symbols.push(String.fromCodePoint(next++));
  return symbols;
}

export interface LearntBpe {
  /** token → id, in CLIP's order */
  vocab: Map<string, number>;
  /** merge rules by rank */
  merges: Array<[string, string]>;
}

/**
 * Learns merges over `words` (lower-case letters) until each word is one token. Each round merges the most
 * frequent adjacent pair; ties go to the pair whose text sorts first, so the result never varies.
 */
export function learnBpe(words: readonly string[]): LearntBpe {
  const sequences = [...new Set(words)].map((w) => {
    if (!/^[a-z]+$/.test(w)) throw new Error(`demo vocabulary word ${JSON.stringify(w)} must be lower-case a–z`);
    const chars = [...w];
    chars[chars.length - 1] += END_OF_WORD;
    return chars;
  });
  const merges: Array<[string, string]> = [];
  for (;;) {
    const counts = new Map<string, number>();
    for (const seq of sequences) {
      for (let i = 0; i + 1 < seq.length; i++) {
        const key = `${seq[i]} ${seq[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    if (counts.size === 0) break;
    let bestKey = '';
    let bestCount = 0;
    for (const [key, count] of counts) {
      if (count > bestCount || (count === bestCount && key < bestKey)) {
        bestKey = key;
        bestCount = count;
      }
    }
    const [a, b] = bestKey.split(' ') as [string, string];
    merges.push([a, b]);
    for (const seq of sequences) {
      for (let i = 0; i + 1 < seq.length; i++) {
        if (seq[i] === a && seq[i + 1] === b) seq.splice(i, 2, a + b);
      }
    }
  }
  const vocab = new Map<string, number>();
  const symbols = byteSymbols();
  for (const s of symbols) vocab.set(s, vocab.size);
  for (const s of symbols) vocab.set(s + END_OF_WORD, vocab.size);
  for (const [a, b] of merges) if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
  vocab.set('<|startoftext|>', vocab.size);
  vocab.set('<|endoftext|>', vocab.size);
  return { vocab, merges };
}

/** vocab.json as transformers writes it (one JSON object, ids in order) */
export function vocabJson(vocab: ReadonlyMap<string, number>): string {
  return JSON.stringify(Object.fromEntries(vocab));
}

/** merges.txt: the version line, then one "a b" rule per line */
export function mergesTxt(merges: ReadonlyArray<[string, string]>): string {
  return ['#version: 0.2', ...merges.map(([a, b]) => `${a} ${b}`)].join('\n') + '\n';
}

/** Words people put in image prompts: subjects, Perfusion categories, places, styles, colours, and glue words. */
export const DEMO_WORDS: readonly string[] = `
a an the of in on at to with and or for from by as is are be this that it its his her their my your our
photo photograph picture image painting drawing sketch illustration render portrait landscape closeup shot
view scene art artwork poster style oil watercolor pencil charcoal ink digital cartoon anime comic pixel
cinematic realistic photorealistic detailed highly quality high best masterpiece sharp focus lighting light
dark bright soft hard studio natural dramatic golden hour sunset sunrise night day morning evening
dog cat teddy bear toy plush doll mug cup bottle vase bowl plate teapot kettle backpack bag purse wallet
shoe shoes boot sneaker hat cap glasses sunglasses watch clock lamp chair table sofa couch bed desk shelf
car truck bus bike bicycle motorcycle boat ship train plane airplane rocket robot statue sculpture figure
person man woman boy girl child baby people friend family king queen knight wizard witch astronaut
bird fish horse cow pig sheep goat duck chicken rabbit bunny mouse fox wolf lion tiger elephant monkey
panda koala penguin owl frog turtle snake dragon unicorn dinosaur butterfly bee spider
flower flowers rose tulip sunflower tree trees forest jungle garden park grass leaf leaves plant plants
mountain mountains hill river lake sea ocean beach island desert snow ice rain cloud clouds sky sun moon
star stars space planet galaxy city town village street road bridge house home castle tower church
building room kitchen window door wall floor roof fire water stone rock sand wood wooden metal glass gold
silver paper fabric red orange yellow green blue purple pink brown black white gray grey colorful
big small tiny huge little old young new happy sad cute funny beautiful pretty ugly scary magic magical
fantasy futuristic vintage retro modern ancient medieval steampunk cyberpunk minimalist abstract surreal
sitting standing running walking jumping flying swimming playing eating sleeping reading wearing holding
riding smiling looking dancing singing
top bottom front back side left right near far above below under over inside outside behind next
one two three four five many some all every each no not very
van gogh monet picasso rembrandt
`.trim().split(/\s+/);
