/**
 * OpenTelemetry traces: the tracer, the names of Waitless's spans and attributes, and the trace
 * context a job carries from its submit to the worker that runs it and the dispatcher that
 * delivers its webhooks.
 *
 * Only `@opentelemetry/api` is used. Until the application registers an SDK (e.g. `NodeSDK`),
 * the API's tracer is a no-op: every span is a shared non-recording object, and a job's trace
 * context is stored as NULL, so tracing costs next to nothing.
 *
 * Spans follow OpenTelemetry's semantic conventions:
 * - messaging: a submit is a `send` (PRODUCER) of one message, the job, to the destination named
 *   after the job; each attempt a worker makes is a `process` (CONSUMER) span whose **parent** is
 *   the submit span (one message is processed, so the conventions allow the creation context as
 *   parent) and which also **links** to it (the conventions' recommended correlation);
 * - each `ctx.step` an INTERNAL child of its attempt's `process` span;
 * - gen_ai: each `streamChat` call a CLIENT `chat {model}` span inside its step;
 * - HTTP client: each webhook attempt a CLIENT `POST` span, child of the submit span (the job's
 *   trace), with the URL's query values redacted.
 */
import {
  type Attributes,
  type Context,
  context,
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type SpanContext,
  SpanStatusCode,
  trace,
  TraceFlags,
} from '@opentelemetry/api';

/** An OpenTelemetry context (a span to parent others), as the worker hands it to a job's context. */
export type TraceContext = Context;

/** The instrumentation scope of every Waitless span. */
export const TRACER_NAME = 'waitless';

// Asked of the global provider at each span (a map lookup in the SDK), not kept: a kept
// ProxyTracer would stay bound to the first provider it saw, through a later disable() or swap.
const tracer = () => trace.getTracer(TRACER_NAME);

/** Attribute names (OpenTelemetry semantic conventions, plus a few of Waitless's own under `waitless.`). */
export const ATTR = {
  MESSAGING_SYSTEM: 'messaging.system',
  MESSAGING_OPERATION_TYPE: 'messaging.operation.type',
  MESSAGING_OPERATION_NAME: 'messaging.operation.name',
  MESSAGING_DESTINATION_NAME: 'messaging.destination.name',
  MESSAGING_MESSAGE_ID: 'messaging.message.id',
  MESSAGING_CLIENT_ID: 'messaging.client.id',
  GEN_AI_OPERATION_NAME: 'gen_ai.operation.name',
  GEN_AI_PROVIDER_NAME: 'gen_ai.provider.name',
  GEN_AI_REQUEST_MODEL: 'gen_ai.request.model',
  GEN_AI_RESPONSE_MODEL: 'gen_ai.response.model',
  GEN_AI_RESPONSE_ID: 'gen_ai.response.id',
  GEN_AI_RESPONSE_FINISH_REASONS: 'gen_ai.response.finish_reasons',
  GEN_AI_USAGE_INPUT_TOKENS: 'gen_ai.usage.input_tokens',
  GEN_AI_USAGE_OUTPUT_TOKENS: 'gen_ai.usage.output_tokens',
  /** Seconds from sending the request to the first chunk of the streamed answer. */
  GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: 'gen_ai.response.time_to_first_chunk',
  HTTP_REQUEST_METHOD: 'http.request.method',
  HTTP_RESPONSE_STATUS_CODE: 'http.response.status_code',
  SERVER_ADDRESS: 'server.address',
  SERVER_PORT: 'server.port',
  URL_FULL: 'url.full',
  ERROR_TYPE: 'error.type',
  /** The job's attempt number (1 for the first run). */
  JOB_ATTEMPT: 'waitless.job.attempt',
  /** How the attempt ended: completed, retried, failed, timed_out, stale, or discarded (the job was taken away). */
  JOB_OUTCOME: 'waitless.job.outcome',
  /** False when an Idempotency-Key matched an earlier submit: no new job, and no new trace for it. */
  JOB_CREATED: 'waitless.job.created',
  STEP_NAME: 'waitless.step.name',
  /** True when the step had completed in an earlier attempt: its recorded result was returned, nothing ran. */
  STEP_REPLAYED: 'waitless.step.replayed',
  WEBHOOK_DELIVERY_ID: 'waitless.webhook.delivery_id',
  /** The attempt number of the delivery (1 for the first). */
  WEBHOOK_ATTEMPT: 'waitless.webhook.attempt',
} as const;

/** The `messaging.system` of every Waitless messaging span. */
export const MESSAGING_SYSTEM = 'waitless';

/** Span names. */
export const SPAN = {
  /** A job submitted (`waitless.submit()` and `POST /v1/jobs/:name`). */
  send: (jobName: string) => `send ${jobName}`,
  /** One attempt of a job in a worker. */
  process: (jobName: string) => `process ${jobName}`,
  step: (stepName: string) => `step ${stepName}`,
  chat: (model: string) => `chat ${model}`,
  /** A webhook attempt: the HTTP client convention names the span after the method. */
  webhook: 'POST',
} as const;

/**
 * A job's trace context as stored with it: W3C Trace Context's two header values. Kept by
 * Waitless itself (read from the submit span, parsed back in the worker) instead of going through
 * the registered propagator, so it survives whatever propagator an application registers (B3,
 * Jaeger, none at all: the API's default propagator is a no-op) and always means the same thing
 * to every process reading the database.
 */
export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C carrier of a span's context; undefined for a span that is not part of a trace (the no-op tracer's). */
export function carrierOf(span: Span): TraceCarrier | undefined {
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return undefined;
  const traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
  const tracestate = sc.traceState?.serialize();
  // W3C asks to pass on at least 512 characters; a caller's longer tracestate is not stored with every job.
  return tracestate && tracestate.length <= 512 ? { traceparent, tracestate } : { traceparent };
}

/** The remote span context a stored carrier (or an incoming `traceparent` header) names; undefined when absent or malformed. */
export function spanContextOf(carrier: unknown): SpanContext | undefined {
  if (typeof carrier !== 'object' || carrier === null) return undefined;
  const { traceparent, tracestate } = carrier as Partial<Record<keyof TraceCarrier, unknown>>;
  if (typeof traceparent !== 'string') return undefined;
  const match = TRACEPARENT.exec(traceparent.trim().toLowerCase());
  if (!match) return undefined;
  const sc: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(typeof tracestate === 'string' && tracestate !== '' ? { traceState: createTraceState(tracestate) } : {}),
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

/** The context of a stored carrier, as a parent: ROOT when there is none (never the caller's unrelated active span). */
function parentOf(carrier: unknown): { parent: Context; remote?: SpanContext } {
  const remote = spanContextOf(carrier);
  return remote ? { parent: trace.setSpanContext(ROOT_CONTEXT, remote), remote } : { parent: ROOT_CONTEXT };
}

/** Marks the span failed with the error (recorded as an exception event). */
export function recordFailure(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) span.recordException(error);
  else span.recordException(String(error));
  span.setAttribute(ATTR.ERROR_TYPE, error instanceof Error ? error.name : 'Error');
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * Runs `fn` in a new span that is active meanwhile (children made through the API, ours or the
 * application's, nest under it), ending it when `fn` settles and recording a throw as a failure.
 */
export async function inSpan<T>(name: string, options: { kind?: SpanKind; attributes?: Attributes; parent?: Context }, fn: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer().startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Runs a submit in its span (PRODUCER, `send {job}`), in the caller's active context: a child of
 * the HTTP server span when the application instruments HTTP, of the caller's own span when it
 * has one. The submit reads the span back with {@link activeCarrier} to store it with the job.
 */
export function submitSpan<T extends { job: { id: string }; created: boolean }>(jobName: string, fn: () => Promise<T>): Promise<T> {
  return inSpan(
    SPAN.send(jobName),
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        [ATTR.MESSAGING_SYSTEM]: MESSAGING_SYSTEM,
        [ATTR.MESSAGING_OPERATION_TYPE]: 'send',
        [ATTR.MESSAGING_OPERATION_NAME]: 'send',
        [ATTR.MESSAGING_DESTINATION_NAME]: jobName,
      },
    },
    async (span) => {
      const outcome = await fn();
      span.setAttributes({ [ATTR.MESSAGING_MESSAGE_ID]: outcome.job.id, [ATTR.JOB_CREATED]: outcome.created });
      return outcome;
    },
  );
}

/** The W3C carrier of the active span (the submit's), to store with the job; undefined when untraced. */
export function activeCarrier(): TraceCarrier | undefined {
  const span = trace.getActiveSpan();
  return span && carrierOf(span);
}

/**
 * Runs `fn` with the request's `traceparent`/`tracestate` headers as its parent context, unless
 * a span is already active (HTTP instrumentation has then read them, with the propagator the
 * application chose). So a caller's trace continues through a submit even when the server
 * itself instruments nothing but Waitless.
 */
export function withIncomingTrace<T>(headers: { traceparent?: string; tracestate?: string }, fn: () => Promise<T>): Promise<T> {
  const active = context.active();
  const remote = trace.getSpan(active) ? undefined : spanContextOf(headers);
  return remote ? context.with(trace.setSpanContext(active, remote), fn) : fn();
}

/** What the worker knows of an attempt when it starts its span. */
export interface ProcessSpanParams {
  jobId: string;
  jobName: string;
  attempt: number;
  workerId: string;
  /** The job's stored trace context (its submit span). */
  traceContext: unknown;
}

/**
 * Starts the span of one attempt (CONSUMER, `process {job}`): child of the submit span, with a
 * link to it too; a root span when the job was submitted untraced. The caller ends it.
 */
export function startProcessSpan(p: ProcessSpanParams): { span: Span; context: Context } {
  const { parent, remote } = parentOf(p.traceContext);
  const span = tracer().startSpan(
    SPAN.process(p.jobName),
    {
      kind: SpanKind.CONSUMER,
      links: remote ? [{ context: remote }] : [],
      attributes: {
        [ATTR.MESSAGING_SYSTEM]: MESSAGING_SYSTEM,
        [ATTR.MESSAGING_OPERATION_TYPE]: 'process',
        [ATTR.MESSAGING_OPERATION_NAME]: 'process',
        [ATTR.MESSAGING_DESTINATION_NAME]: p.jobName,
        [ATTR.MESSAGING_MESSAGE_ID]: p.jobId,
        [ATTR.MESSAGING_CLIENT_ID]: p.workerId,
        [ATTR.JOB_ATTEMPT]: p.attempt,
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Records how an attempt ended on its span; an outcome other than completed or stale marks it failed. */
export function endProcessSpan(span: Span, outcome: string, error?: unknown): void {
  span.setAttribute(ATTR.JOB_OUTCOME, outcome);
  if (error !== undefined) recordFailure(span, error);
  else if (outcome !== 'completed' && outcome !== 'stale') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome });
  span.end();
}

/** Runs `fn` with `ctx` active (the attempt's span), so spans made inside it, the handler's own too, nest under it. */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/**
 * Runs `fn` outside any trace: for the work a worker shares between jobs (its claim loop, its
 * rounds of buffered writes), which would otherwise carry on in the context of whichever job
 * set it going, and put spans of other jobs' claims and writes (pg or http instrumentation's)
 * in that job's trace.
 */
export function detached<T>(fn: () => T): T {
  return context.with(ROOT_CONTEXT, fn);
}

/** Runs a step in its span (INTERNAL, `step {name}`), child of the attempt's `process` span (or of the active one). */
export function stepSpan<T>(stepName: string, parent: Context | undefined, fn: (span: Span) => Promise<T>): Promise<T> {
  return inSpan(SPAN.step(stepName), { parent, attributes: { [ATTR.STEP_NAME]: stepName } }, fn);
}

/** `server.address` and `server.port` of a URL, as the HTTP and gen_ai conventions want them. */
export function serverAttributes(url: string | undefined): Attributes {
  if (!url) return {};
  try {
    const parsed = new URL(url);
    const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : parsed.protocol === 'http:' ? 80 : undefined) : Number(parsed.port);
    return { [ATTR.SERVER_ADDRESS]: parsed.hostname.replace(/^\[|\]$/g, ''), ...(port === undefined ? {} : { [ATTR.SERVER_PORT]: port }) };
  } catch {
    return {};
  }
}

/**
 * Runs a chat completion in its span (CLIENT, `chat {model}`), in the active context (the
 * step's). `gen_ai.provider.name` is `openai`: the calls speak OpenAI's API, whichever server
 * answers it.
 */
export function chatSpan<T>(model: string, baseUrl: string | undefined, fn: (span: Span) => Promise<T>): Promise<T> {
  return inSpan(
    SPAN.chat(model),
    {
      kind: SpanKind.CLIENT,
      attributes: {
        [ATTR.GEN_AI_OPERATION_NAME]: 'chat',
        [ATTR.GEN_AI_PROVIDER_NAME]: 'openai',
        [ATTR.GEN_AI_REQUEST_MODEL]: model,
        ...serverAttributes(baseUrl),
      },
    },
    fn,
  );
}

/** What the dispatcher knows of a webhook attempt when it starts its span. */
export interface WebhookSpanParams {
  deliveryId: string;
  /** The attempt's number (1 for the first). */
  attempt: number;
  /** The receiver's URL with its query values redacted. */
  redactedUrl: string;
  /** The job's stored trace context. */
  traceContext: unknown;
}

/** Runs one webhook attempt in its span (CLIENT, `POST`), child of the job's submit span. */
export function webhookSpan<T>(p: WebhookSpanParams, fn: (span: Span) => Promise<T>): Promise<T> {
  return inSpan(
    SPAN.webhook,
    {
      kind: SpanKind.CLIENT,
      parent: parentOf(p.traceContext).parent,
      attributes: {
        [ATTR.HTTP_REQUEST_METHOD]: 'POST',
        [ATTR.URL_FULL]: p.redactedUrl,
        ...serverAttributes(p.redactedUrl),
        [ATTR.WEBHOOK_DELIVERY_ID]: p.deliveryId,
        [ATTR.WEBHOOK_ATTEMPT]: p.attempt,
      },
    },
    fn,
  );
}

/** Records an HTTP response status on a client span; 4xx and 5xx mark it failed, as the HTTP client convention says. */
export function recordHttpStatus(span: Span, status: number | undefined, error?: string): void {
  if (status !== undefined) span.setAttribute(ATTR.HTTP_RESPONSE_STATUS_CODE, status);
  if (status !== undefined && status >= 400) {
    span.setAttribute(ATTR.ERROR_TYPE, String(status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  } else if (error !== undefined) {
    span.setAttribute(ATTR.ERROR_TYPE, status === undefined ? 'network' : String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  }
}

/**
 * Sends the spans the registered SDK still buffers (its `forceFlush`), waiting at most
 * `timeoutMs`: the CLI calls it before it exits on a signal, when the SDK's own exit hooks no
 * longer run. Nothing to do without an SDK.
 */
export async function flushTraces(timeoutMs = 5_000): Promise<void> {
  const provider = trace.getTracerProvider() as { getDelegate?: () => unknown; forceFlush?: () => Promise<void> };
  const sdk = (provider.getDelegate?.() ?? provider) as { forceFlush?: () => Promise<void> };
  if (typeof sdk.forceFlush !== 'function') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    sdk.forceFlush().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}
