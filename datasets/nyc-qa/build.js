#!/usr/bin/env node
'use strict';
/**
 * Derives the NYC question-and-answer splits from the single source file, facts.jsonl.
 *
 *   node datasets/nyc-qa/build.js          write train/validation/test/held_out_facts.jsonl, print counts
 *   node datasets/nyc-qa/build.js --check  write nothing; exit 1 if a split file differs from the derivation
 *
 * The rule is fixed and deterministic (no randomness, no dependencies):
 *   - fact number n (1-based position in facts.jsonl) with n % 7 === 0 is a held-out fact: all of its
 *     phrasings go to held_out_facts.jsonl and nowhere else;
 *   - every other fact is a training fact. Counting training facts from 0 in file order, training fact t
 *     sends q1 to train, q2 to validation when t is even and to test when t is odd, and q3 (if any) to train.
 * So validation and test hold unseen phrasings of trained facts, held_out_facts holds facts never trained
 * on, and no question text is in two splits.
 */
const fs = require('fs');
const path = require('path');

const CATEGORIES = [
  'borough', 'neighbourhood', 'landmark', 'museum', 'park', 'bridge_tunnel', 'transit',
  'airport', 'sports', 'food', 'history', 'geography', 'government', 'culture',
];
const SPLITS = ['train', 'validation', 'test', 'held_out_facts'];
const HELD_OUT_EVERY = 7;
const FACT_FIELDS = ['fact_id', 'category', 'answer', 'questions'];

/** Parses facts.jsonl text into fact objects, rejecting anything the split rule cannot handle. */
function parseFacts(text) {
  const facts = [];
  const seen = new Set();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `facts.jsonl line ${i + 1}`;
    const fact = JSON.parse(line);
    const keys = Object.keys(fact);
    if (keys.length !== FACT_FIELDS.length || !FACT_FIELDS.every((k) => keys.includes(k))) {
      throw new Error(`${where}: fields must be exactly ${FACT_FIELDS.join(', ')}`);
    }
    for (const k of ['fact_id', 'category', 'answer']) {
      if (typeof fact[k] !== 'string' || fact[k].trim() === '') throw new Error(`${where}: empty ${k}`);
    }
    if (!/^nyc-\d{4}$/.test(fact.fact_id)) throw new Error(`${where}: bad fact_id ${fact.fact_id}`);
    if (seen.has(fact.fact_id)) throw new Error(`${where}: duplicate fact_id ${fact.fact_id}`);
    seen.add(fact.fact_id);
    if (!CATEGORIES.includes(fact.category)) throw new Error(`${where}: unknown category ${fact.category}`);
    const qs = fact.questions;
    if (!Array.isArray(qs) || qs.length < 2 || qs.length > 3) throw new Error(`${where}: needs 2 or 3 questions`);
    if (qs.some((q) => typeof q !== 'string' || q.trim() === '')) throw new Error(`${where}: empty question`);
    facts.push(fact);
  });
  return facts;
}

function readFacts(dir = __dirname) {
  return parseFacts(fs.readFileSync(path.join(dir, 'facts.jsonl'), 'utf8'));
}

const isHeldOut = (factIndex) => (factIndex + 1) % HELD_OUT_EVERY === 0;

/** One split row; k is the 0-based phrasing index. Field order is fixed. */
function row(fact, k) {
  return {
    id: `${fact.fact_id}-q${k + 1}`,
    fact_id: fact.fact_id,
    category: fact.category,
    question: fact.questions[k],
    answer: fact.answer,
  };
}

/** Applies the split rule; returns { train, validation, test, held_out_facts }, each an array of rows. */
function buildSplits(facts) {
  const splits = { train: [], validation: [], test: [], held_out_facts: [] };
  let t = 0;
  facts.forEach((fact, i) => {
    if (isHeldOut(i)) {
      fact.questions.forEach((_, k) => splits.held_out_facts.push(row(fact, k)));
      return;
    }
    splits.train.push(row(fact, 0));
    splits[t % 2 === 0 ? 'validation' : 'test'].push(row(fact, 1));
    if (fact.questions.length > 2) splits.train.push(row(fact, 2));
    t += 1;
  });
  return splits;
}

const toJsonl = (rows) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** Markdown table: rows per split and category, plus a facts column. */
function countsTable(facts, splits) {
  const factsPer = {};
  for (const f of facts) factsPer[f.category] = (factsPer[f.category] || 0) + 1;
  const count = (split, cat) => splits[split].filter((r) => cat === undefined || r.category === cat).length;
  const heldFacts = (cat) => new Set(splits.held_out_facts.filter((r) => cat === undefined || r.category === cat).map((r) => r.fact_id)).size;
  const header = ['category', 'facts', 'held-out facts', ...SPLITS.map((s) => `${s} rows`)];
  const lines = [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  for (const cat of CATEGORIES) {
    lines.push(`| ${cat} | ${factsPer[cat] || 0} | ${heldFacts(cat)} | ${SPLITS.map((s) => count(s, cat)).join(' | ')} |`);
  }
  lines.push(`| **total** | **${facts.length}** | **${heldFacts()}** | ${SPLITS.map((s) => `**${count(s)}**`).join(' | ')} |`);
  return lines.join('\n');
}

function main(argv) {
  const check = argv.includes('--check');
  const facts = readFacts();
  const splits = buildSplits(facts);
  let stale = 0;
  for (const s of SPLITS) {
    const file = path.join(__dirname, `${s}.jsonl`);
    const text = toJsonl(splits[s]);
    if (check) {
      const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
      if (current !== text) {
        console.error(`${s}.jsonl is out of date with facts.jsonl`);
        stale += 1;
      }
    } else {
      fs.writeFileSync(file, text);
    }
  }
  const trainFacts = facts.length - new Set(splits.held_out_facts.map((r) => r.fact_id)).size;
  console.log(`${facts.length} facts: ${trainFacts} training facts, ${facts.length - trainFacts} held-out facts`);
  console.log(SPLITS.map((s) => `${s}: ${splits[s].length} rows`).join(', '));
  console.log('');
  console.log(countsTable(facts, splits));
  if (stale > 0) process.exitCode = 1;
}

module.exports = { CATEGORIES, SPLITS, HELD_OUT_EVERY, parseFacts, readFacts, buildSplits, toJsonl, countsTable };

if (require.main === module) main(process.argv.slice(2));
