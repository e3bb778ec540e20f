import type OpenAI from 'openai';
import type { ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { JobContext, StepContext, TokenUsage } from '../job/definition.ts';
import { type Duration, toMs } from '../job/duration.ts';
import { JobCancelledError, LeaseLostError } from '../job/errors.ts';
import type { Span } from '@opentelemetry/api';
import { ATTR, chatSpan } from '../observability/tracing.ts';

/**
 * What {@link streamChat} needs of a job's context. A {@link JobContext} has all of it. Inside
 * `ctx.all`, `{ ...ctx, step: child.step }` runs the call under the child's signal (the
 * children's tokens then share the job's one partial output).
 */
export type StreamChatContext = Pick<JobContext, 'step' | 'write' | 'flush' | 'recordUsage' | 'log'>;

/** A chat-completion request as {@link streamChat} sends it: everything but `stream`, which it sets. */
export type StreamChatRequest = Omit<ChatCompletionCreateParamsStreaming, 'stream'>;

/** Options of {@link streamChat}. */
export interface StreamChatOptions {
  /**
   * An `openai` client (v5 or later), pointed at any OpenAI-compatible API with `baseURL`
   * (OpenAI, Azure, vLLM, Ollama, llama.cpp, LiteLLM, OpenRouter…). Required.
   *
   * Its own retries (`maxRetries`, default 2) still apply to a request that fails before the
   * stream starts; a stream that breaks part-way is the job's to retry.
   */
  client: OpenAI;
  /**
   * The request, as for `client.chat.completions.create` without `stream` (always `true`
   * here). `stream_options.include_usage` is always set to `true`; other `stream_options` are
   * kept. Only the first choice is read, so `n` must be 1 (or absent). Required.
   */
  request: StreamChatRequest;
  /**
   * Name of the job step the call runs in (see {@link JobContext.step}); unique within the job,
   * so give each call of a job a name of its own. Default: `"llm"`.
   */
  step?: string;
  /**
   * How often, at most, the text streamed so far is saved as the step's checkpoint while it
   * streams (nothing is saved when nothing changed). A shorter interval loses less text to a
   * crash and costs more database writes. Default: `"1s"`.
   */
  checkpointEvery?: Duration;
  /**
   * The `user` message that asks the model to go on when an earlier attempt's text is resumed
   * (see {@link streamChat}). Default: {@link DEFAULT_CONTINUE_PROMPT}.
   */
  continuePrompt?: string;
}

/** What {@link streamChat} resolves with. */
export interface StreamChatResult {
  /** The whole text of the answer: on a resumed call, the checkpointed text plus the continuation. */
  text: string;
  /**
   * Token usage of the request that finished, as its final usage chunk reported it; undefined
   * when the server sent none (nothing is estimated, and nothing is recorded on the job).
   */
  usage?: TokenUsage;
  /** The `finish_reason` of the last request: `"stop"`, `"length"`, `"content_filter"`, `"tool_calls"`… */
  finishReason?: string;
}

/** The default {@link StreamChatOptions.continuePrompt}. */
export const DEFAULT_CONTINUE_PROMPT =
  'Your previous answer was cut off. Continue it exactly where it stopped, starting with the very next character. ' +
  'Do not repeat anything you already wrote, and do not add any preamble or comment.';

/** Thrown when a stream ends without a `finish_reason`: the answer is incomplete (the job retries, and resumes). */
export class IncompleteStreamError extends Error {
  override name = 'IncompleteStreamError';
}

/** What the step saves while streaming. */
interface Checkpoint {
  text: string;
}

const DEFAULT_STEP = 'llm';
const DEFAULT_CHECKPOINT_EVERY: Duration = '1s';

/**
 * Streams a chat completion from an OpenAI-compatible API into a job: durable, resumable,
 * cancellable, with its token usage on the job.
 *
 * ```ts
 * import OpenAI from 'openai';
 * import { streamChat } from 'waitless/llm';
 *
 * const openai = new OpenAI();
 * export const summarize = defineJob({
 *   name: 'summarize',
 *   input: z.object({ text: z.string() }),
 *   async run({ text }, ctx) {
 *     const { text: summary } = await streamChat(ctx, {
 *       client: openai,
 *       request: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Summarize:\n${text}` }] },
 *     });
 *     return { summary };
 *   },
 * });
 * ```
 *
 * - **Streamed.** Every content delta goes to the job's partial output with `ctx.write`, which
 *   writes it in batches (not one database write per token).
 * - **Cancellable.** The job's signal (the step's, so a child's inside `ctx.all`) is handed to
 *   the SDK: a cancel, a timeout, a lost lease or a shutdown aborts the HTTP request at once, and
 *   no more tokens are paid for or written. The call then rejects with the signal's reason.
 * - **Paid for once.** The call runs in `ctx.step(options.step)`: once it has finished, a retry
 *   of the job (after a later step failed, a crash, a lost lease) gets the recorded result
 *   without a new request and without recording its usage again; its text is written to the
 *   new attempt's partial output (which starts empty), so the output shows it again.
 * - **Resumable.** While streaming, the text so far is saved as the step's checkpoint at most
 *   every `checkpointEvery`, and once more when the stream fails (unless the job was cancelled
 *   or taken away). A later attempt that finds a checkpoint writes its text to the partial
 *   output at once, so whoever watches sees again what they saw, then asks the model to
 *   continue: the request's messages, plus an `assistant` message with the partial text and a
 *   `user` message ({@link StreamChatOptions.continuePrompt}) asking to go on exactly where it
 *   stopped. The result's `text` is the checkpointed text followed by the continuation.
 *
 *   The trade-off: the tokens already streamed are not paid for again as output, but the
 *   partial text is sent again as input (prompt tokens); the continuation is the model's best
 *   effort at a seamless join (a repeated word or a missing space at the seam is possible, and
 *   the whole is not the answer one uninterrupted call would have given); and what streamed
 *   after the last checkpoint of a worker that died without saving (up to `checkpointEvery`)
 *   is generated again, so the output a watcher sees steps back to the checkpoint first.
 * - **Usage.** The final usage chunk (asked for with `stream_options.include_usage`) is added
 *   to the job's usage with `ctx.recordUsage`, under the model the server names. A server that
 *   sends no usage records nothing: nothing is estimated. Usage of a stream that broke is never
 *   reported by the server, so it is not recorded either.
 * - **Errors.** The SDK's errors (HTTP status, connection) propagate, and the job's retry policy
 *   applies. A stream that ends without a `finish_reason` (cut short, e.g. by the client's
 *   `timeout`) rejects with {@link IncompleteStreamError}, so the retry resumes it.
 *
 * - **Traced.** With an OpenTelemetry SDK registered, the request is a `chat {model}` CLIENT span
 *   inside its step's span, with the gen_ai attributes: models asked for and answering, tokens in
 *   and out, finish reason, and `gen_ai.response.time_to_first_chunk`. Prompts and answers are not
 *   recorded.
 *
 * Only text is read: the first choice's `delta.content`. Tool calls and refusals are not
 * collected (a `"tool_calls"` finish reason is returned as is).
 */
export async function streamChat(ctx: StreamChatContext, options: StreamChatOptions): Promise<StreamChatResult> {
  const { client, request } = options;
  const checkpointMs = toMs(options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY, 'checkpointEvery');
  if (request.n != null && request.n !== 1) throw new TypeError(`streamChat reads one choice; request.n must be 1, got ${request.n}.`);
  const continuePrompt = options.continuePrompt ?? DEFAULT_CONTINUE_PROMPT;

  let ran = false;
  const result = await ctx.step(options.step ?? DEFAULT_STEP, (step): Promise<StreamChatResult> => {
    ran = true;
    // The call's span (gen_ai conventions), a child of the step's.
    return chatSpan(request.model, client.baseURL, (span) => streamInStep(ctx, step, span, options, checkpointMs, continuePrompt));
  });
  // A call recorded by an earlier attempt: its text goes to this attempt's output again.
  if (!ran) ctx.write(result.text);
  return result;
}

/** One streamed request inside its step: resumes from the checkpoint, streams, records usage and the span's gen_ai attributes. */
async function streamInStep(
  ctx: StreamChatContext,
  step: StepContext,
  span: Span,
  options: StreamChatOptions,
  checkpointMs: number,
  continuePrompt: string,
): Promise<StreamChatResult> {
  const { client, request } = options;
  const { signal } = step;
  if (signal.aborted) throw signal.reason;

  const resumed = checkpointText(step.checkpoint);
  let messages: ChatCompletionMessageParam[] = request.messages;
  if (resumed) {
    // Whoever watches sees at once what they saw before the attempt that failed.
    ctx.write(resumed);
    await ctx.flush();
    messages = [...request.messages, { role: 'assistant', content: resumed }, { role: 'user', content: continuePrompt }];
  }

  const checkpoints = new Checkpointer(step, ctx, checkpointMs, resumed);
  let text = resumed;
  let usage: TokenUsage | undefined;
  let finishReason: string | undefined;
  try {
    const sentAt = performance.now();
    let firstChunk = true;
    const stream = await client.chat.completions.create(
      { ...request, messages, stream: true, stream_options: { ...request.stream_options, include_usage: true } },
      { signal },
    );
    // On abort, the SDK ends this loop without an error: the signal is checked after it.
    for await (const chunk of stream) {
      if (firstChunk) {
        firstChunk = false;
        span.setAttributes({
          [ATTR.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]: (performance.now() - sentAt) / 1000,
          ...(chunk.id ? { [ATTR.GEN_AI_RESPONSE_ID]: chunk.id } : {}),
          ...(chunk.model ? { [ATTR.GEN_AI_RESPONSE_MODEL]: chunk.model } : {}),
        });
      }
      const choice = chunk.choices.find((c) => c.index === 0);
      const delta = choice?.delta?.content;
      if (delta) {
        text += delta;
        ctx.write(delta);
        checkpoints.changed(text);
      }
      if (choice?.finish_reason) finishReason = choice.finish_reason;
      if (chunk.usage) {
        usage = {
          model: chunk.model || request.model,
          promptTokens: chunk.usage.prompt_tokens,
          completionTokens: chunk.usage.completion_tokens,
          totalTokens: chunk.usage.total_tokens,
        };
      }
    }
    if (finishReason) span.setAttribute(ATTR.GEN_AI_RESPONSE_FINISH_REASONS, [finishReason]);
    if (usage) {
      span.setAttributes({
        [ATTR.GEN_AI_RESPONSE_MODEL]: usage.model ?? request.model,
        [ATTR.GEN_AI_USAGE_INPUT_TOKENS]: usage.promptTokens ?? 0,
        [ATTR.GEN_AI_USAGE_OUTPUT_TOKENS]: usage.completionTokens ?? 0,
      });
    }
    if (signal.aborted) throw signal.reason;
    if (!finishReason) throw new IncompleteStreamError('The model stream ended without a finish_reason: the answer is incomplete.');
  } catch (error) {
    const thrown: unknown = signal.aborted ? signal.reason : error;
    await checkpoints.final(text, signal);
    throw thrown;
  }
  await checkpoints.stop();
  if (usage) await ctx.recordUsage(usage);
  return { text, ...(usage ? { usage } : {}), ...(finishReason ? { finishReason } : {}) };
}

function checkpointText(checkpoint: unknown): string {
  if (typeof checkpoint !== 'object' || checkpoint === null) return '';
  const { text } = checkpoint as Partial<Checkpoint>;
  return typeof text === 'string' ? text : '';
}

/**
 * Saves the text as the step's checkpoint at most every `everyMs`, in the background (tokens
 * never wait on the database), one save at a time, and only when the text has changed.
 */
class Checkpointer {
  private saved: string;
  private latest: string;
  private lastSaveAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private readonly step: StepContext;
  private readonly ctx: StreamChatContext;
  private readonly everyMs: number;

  constructor(step: StepContext, ctx: StreamChatContext, everyMs: number, initial: string) {
    this.step = step;
    this.ctx = ctx;
    this.everyMs = everyMs;
    this.saved = initial;
    this.latest = initial;
    this.lastSaveAt = Date.now();
  }

  changed(text: string): void {
    this.latest = text;
    if (this.timer) return;
    const wait = Math.max(0, this.lastSaveAt + this.everyMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // The previous save first: saves land in order, never an older text over a newer one.
      this.inFlight = this.inFlight.then(() => this.save());
    }, wait);
  }

  /** Stops saving; waits for a save under way. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /**
   * After a failure: saves the text once more, so the next attempt resumes from all of it;
   * not when the job was cancelled (no attempt follows) or taken away (the write is refused).
   */
  async final(text: string, signal: AbortSignal): Promise<void> {
    await this.stop();
    this.latest = text;
    if (signal.aborted && (signal.reason instanceof JobCancelledError || signal.reason instanceof LeaseLostError)) return;
    await this.save();
  }

  private async save(): Promise<void> {
    const text = this.latest;
    if (text === this.saved) return;
    this.lastSaveAt = Date.now();
    try {
      await this.step.saveCheckpoint({ text } satisfies Checkpoint);
      this.saved = text;
    } catch (error) {
      // A lost lease aborts the signal, which ends the stream; anything else costs only this checkpoint.
      this.ctx.log.debug('streamChat checkpoint not saved', { step: this.step.name, error: error instanceof Error ? error.message : String(error) });
    }
  }
}
