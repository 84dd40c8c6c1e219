/** Evaluation of a model (with its active adapter) on question/answer examples. */
import type { QAExample } from '../data/example';
import { formatPrompt } from '../data/example';
import type { TrainingClient } from '../train/client';
import { evaluateLoss, tokenizeAll } from '../train/finetune';
import { generateMany } from '../sample/generate';
import { type AnswerScores, meanScores, normalizeAnswer, recited, scoreAnswer } from './metrics';

export * from './metrics';

export interface ScoredAnswer extends AnswerScores {
  id?: string;
  question: string;
  reference: string;
  answer: string;
  /** With trainAnswers: 1 when the answer is a training answer other than the reference. */
  recited?: number;
}

export interface EvalResult extends AnswerScores {
  examples: number;
  /** Weighted mean NLL of the reference answers (completion tokens only). */
  loss: number;
  /** exp(loss): perplexity of the reference answers. */
  perplexity: number;
  /** With trainAnswers: the share of answers that recite a training answer other than the reference. */
  recited?: number;
  answers: ScoredAnswer[];
}

/** Greedy answers to many questions, batched by prompt length. */
export function greedyAnswers(client: TrainingClient, questions: string[], maxTokens = 32): string[] {
  const samples = generateMany(client.model, client.tokenizer, questions.map(formatPrompt), { temperature: 0, maxTokens, stop: ['\n'] });
  return samples.map((s) => s.text.trim());
}

export function greedyAnswer(client: TrainingClient, question: string, maxTokens?: number): string {
  return greedyAnswers(client, [question], maxTokens)[0];
}

/**
 * Perplexity of the references and the scores of greedy answers. With `trainAnswers` (the answers the
 * model was fine-tuned on), also the share of answers that recite one of them wrongly (see `recited`).
 */
export function evaluate(
  client: TrainingClient,
  examples: QAExample[],
  opts: { batchSize?: number; maxTokens?: number; trainAnswers?: Iterable<string> } = {},
): EvalResult {
  const tokenized = tokenizeAll(client.tokenizer, examples, client.model.config.n_positions);
  const loss = evaluateLoss(client, tokenized, opts.batchSize ?? 16);
  const generated = greedyAnswers(client, examples.map((ex) => ex.question), opts.maxTokens);
  const known = opts.trainAnswers ? new Set([...opts.trainAnswers].map(normalizeAnswer)) : undefined;
  const answers: ScoredAnswer[] = examples.map((ex, i) => {
    const answer = generated[i];
    return { id: ex.id, question: ex.question, reference: ex.answer, answer, ...scoreAnswer(answer, ex.answer), ...(known ? { recited: recited(answer, ex.answer, known) } : {}) };
  });
  const share = known ? { recited: answers.reduce((n, a) => n + a.recited!, 0) / Math.max(1, answers.length) } : {};
  return { examples: examples.length, loss, perplexity: Math.exp(loss), ...meanScores(answers), ...share, answers };
}
