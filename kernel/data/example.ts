/**
 * A supervised example: one question and its answer, with where it came from so that errors, outlier
 * reports and per-input quality can point back at the dataset file.
 */
export interface QAExample {
  question: string;
  answer: string;
  id?: string;
  /** Dataset file and 1-based line where the example starts. */
  source: { file: string; line: number };
}

/** The prompt shown to the model; `{question}` is replaced by the question text. */
export const PROMPT_TEMPLATE = 'Question: {question}\nAnswer:';

/** Prompt part (loss weight 0). Not via String.replace, so `$&`-style patterns in questions stay literal. */
export function formatPrompt(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

/** Completion part (loss weight 1): the leading space belongs to the answer, the newline ends it. */
export function formatCompletion(answer: string): string {
  return ` ${answer}\n`;
}
