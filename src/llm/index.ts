/**
 * `waitless/llm`: model calls inside jobs. Needs the `openai` package (v5 or later) only in the
 * application that passes its client; nothing here loads it.
 * @packageDocumentation
 */
export { DEFAULT_CONTINUE_PROMPT, IncompleteStreamError, streamChat } from './stream-chat.ts';
export type { StreamChatContext, StreamChatOptions, StreamChatRequest, StreamChatResult } from './stream-chat.ts';
