/** Evaluation of a model (with its active adapter) on question/answer examples. */
import type { QAExample } from '../data/example';
import { formatPrompt } from '../data/example';
import type { TrainingClient } from '../train/client';
import { evaluateLoss, tokenizeAll } from '../train/finetune';
import { generateMany } from '../sample/generate';
import { type AnswerScores, meanScores, scoreAnswer } from './metrics';

export * from './metrics';

export interface ScoredAnswer extends AnswerScores {
  id?: string;
  question: string;
  reference: string;
  answer: string;
}

export interface EvalResult extends AnswerScores {
  examples: number;
  /** Weighted mean NLL of the reference answers (completion tokens only). */
  loss: number;
  /** exp(loss): perplexity of the reference answers. */
  perplexity: number;
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

/** Perplexity of the references and the scores of greedy answers. */
export function evaluate(
  client: TrainingClient,
  examples: QAExample[],
  opts: { batchSize?: number; maxTokens?: number } = {},
): EvalResult {
  const tokenized = tokenizeAll(client.tokenizer, examples, client.model.config.n_positions);
  const loss = evaluateLoss(client, tokenized, opts.batchSize ?? 16);
  const generated = greedyAnswers(client, examples.map((ex) => ex.question), opts.maxTokens);
  const answers = examples.map((ex, i) => {
    const answer = generated[i];
    return { id: ex.id, question: ex.question, reference: ex.answer, answer, ...scoreAnswer(answer, ex.answer) };
  });
  return { examples: examples.length, loss, perplexity: Math.exp(loss), ...meanScores(answers), answers };
}
