#!/usr/bin/env node
'use strict';
/**
 * Nearest-question baseline: each question gets the answer of the most similar training question,
 * by TF-IDF cosine over its words. It measures how much of a split word overlap alone can answer:
 * the wording a fine-tuned model has to see past is the rest.
 *
 *   node datasets/nyc-qa/baseline.js   (after `npm run build`: it scores with ChromaTune's metrics)
 *
 * Hand-written: TF-IDF over 800 short questions is a few lines, and no dependency of the project has it.
 * The weighting is scikit-learn's TfidfVectorizer default (raw counts, smooth idf ln((1+N)/(1+df)) + 1,
 * rows scaled to unit length), so the figures can be checked against it.
 */
const fs = require('fs');
const path = require('path');
const { answerTokens, exactMatch, tokenF1 } = require('../../dist/kernel/eval/metrics');

/** Unit-length TF-IDF vectors (Map word -> weight) of `texts`, with idf from `corpus`. */
function tfidf(corpus, texts) {
  const df = new Map();
  for (const t of corpus) for (const w of new Set(answerTokens(t))) df.set(w, (df.get(w) ?? 0) + 1);
  const idf = (w) => Math.log((1 + corpus.length) / (1 + (df.get(w) ?? 0))) + 1;
  return texts.map((t) => {
    const v = new Map();
    for (const w of answerTokens(t)) v.set(w, (v.get(w) ?? 0) + idf(w));
    const norm = Math.hypot(...v.values()) || 1;
    for (const [w, x] of v) v.set(w, x / norm);
    return v;
  });
}

/** Index into `train` of the training question most similar to each of `questions` (the first on ties). */
function nearestQuestion(train, questions) {
  // One call, so the document frequencies are counted once for both sides.
  const vecs = tfidf(train, [...train, ...questions]);
  const trainVecs = vecs.slice(0, train.length);
  return vecs.slice(train.length).map((q) => {
    let best = 0;
    let bestScore = -1;
    trainVecs.forEach((t, i) => {
      let s = 0;
      for (const [w, x] of q) s += x * (t.get(w) ?? 0);
      if (s > bestScore) [best, bestScore] = [i, s];
    });
    return best;
  });
}

/** Token F1, exact match and the share answered from the right fact, of the baseline on `rows`. */
function scoreSplit(train, rows) {
  const nearest = nearestQuestion(train.map((r) => r.question), rows.map((r) => r.question));
  const mean = (f) => rows.reduce((s, r, i) => s + f(train[nearest[i]], r), 0) / rows.length;
  return {
    tokenF1: mean((t, r) => tokenF1(t.answer, r.answer)),
    exactMatch: mean((t, r) => exactMatch(t.answer, r.answer)),
    rightFact: mean((t, r) => (t.fact_id === r.fact_id ? 1 : 0)),
  };
}

module.exports = { tfidf, nearestQuestion, scoreSplit };

if (require.main === module) {
  const read = (split) => fs.readFileSync(path.join(__dirname, `${split}.jsonl`), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const train = read('train');
  console.log('split           token F1  exact match  right fact');
  for (const split of ['validation', 'test', 'held_out_facts']) {
    const s = scoreSplit(train, read(split));
    console.log(`${split.padEnd(16)}${s.tokenF1.toFixed(3).padStart(8)}${s.exactMatch.toFixed(3).padStart(13)}${s.rightFact.toFixed(3).padStart(12)}`);
  }
}
