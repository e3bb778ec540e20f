// @ts-check
/**
 * The shapes the dashboard reads off the wire (JSDoc types, checked by tsc; nothing at run time).
 */

/** @typedef {import('../contract/statuses.ts').JobStatus} JobStatus */
/** @typedef {{ percent?: number, stage?: string, message?: string, data?: unknown }} Progress */
/** @typedef {{ code?: string, message?: string, name?: string, [key: string]: unknown }} JobError */

/**
 * A job as the list and the tenant stream show it (the stream leaves out input, output, result
 * and fallback).
 * @typedef {object} JobSummary
 * @property {string} id
 * @property {string} name
 * @property {JobStatus} status
 * @property {boolean} done
 * @property {Progress} [progress]
 * @property {JobError} [error]
 * @property {number} attempt
 * @property {number} maxAttempts
 * @property {number} version
 * @property {string} createdAt
 * @property {string} [startedAt]
 * @property {string} [finishedAt]
 * @property {string} updatedAt
 * @property {string} runAt
 */

/**
 * A job as `GET /v1/jobs/:id` shows it.
 * @typedef {JobSummary & { input?: unknown, output?: string, result?: unknown, fallback?: { result: unknown, provisional: true },
 *   steps?: Array<{ name: string, status: string, attempt: number, durationMs?: number, error?: string }>,
 *   usage?: { promptTokens: number, completionTokens: number, totalTokens: number },
 *   priority?: number, supersedeKey?: string, concurrency?: { key: string, limit: number } }} JobView
 */

/** @typedef {{ seq: number, type: string, data: Record<string, unknown>, at: string }} JobEvent */
/** @typedef {{ n: number, startedAt: string, statusCode?: number, latencyMs: number, responseExcerpt?: string, error?: string }} DeliveryAttempt */

/**
 * @typedef {object} Delivery
 * @property {string} id
 * @property {string} jobId
 * @property {string} url
 * @property {string} eventType
 * @property {string} status
 * @property {DeliveryAttempt[]} attempts
 * @property {string} [nextAttemptAt]
 * @property {string} [lastError]
 * @property {string} createdAt
 * @property {string} [deliveredAt]
 */

/** @typedef {{ type?: string, title?: string, status?: number, detail?: string }} Problem */
/** @typedef {'connecting' | 'live' | 'reconnecting' | 'signed-out'} ConnectionState */

export {};
