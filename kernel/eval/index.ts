/** Evaluation of a model (with its active adapter) on question/answer examples. */
import type { QAExample } from '../data/example';
import { formatPrompt } from '../data/example';
import type { TrainingClient } from '../train/client';
import { evaluateLoss, tokenizeAll } from '../train/finetune';

export interface EvalResult {
  examples: number;
  /** Weighted mean NLL of the reference answers (completion tokens only). */
  loss: number;
  perplexity: number;
  /** Fraction of greedy answers equal to the reference after trimming whitespace. */
  exactMatch: number;
  answers: Array<{ question: string; reference: string; answer: string }>;
}

export function greedyAnswer(client: TrainingClient, question: string, maxTokens = 48): string {
  return client.sample(formatPrompt(question), { temperature: 0, maxTokens, stop: ['\n'] }).samples[0].text.trim();
}

export function evaluate(client: TrainingClient, examples: QAExample[], opts: { batchSize?: number; maxTokens?: number } = {}): EvalResult {
  const tokenized = tokenizeAll(client.tokenizer, examples, client.model.config.n_positions);
  const loss = evaluateLoss(client, tokenized, opts.batchSize ?? 16);
  const answers = examples.map((ex) => ({ question: ex.question, reference: ex.answer, answer: greedyAnswer(client, ex.question, opts.maxTokens) }));
  const exact = answers.filter((a) => a.answer === a.reference.trim()).length;
  return { examples: examples.length, loss, perplexity: Math.exp(loss), exactMatch: examples.length ? exact / examples.length : 0, answers };
}
