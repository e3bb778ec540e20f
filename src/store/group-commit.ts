import { unreachableReason } from './unreachable.ts';

/**
 * Many callers' writes of one kind, made as one statement. `add` joins the batch that goes out
 * next; while a batch is being written, new items gather and go together in the following one.
 * No timer: an idle process writes at once (after the current turn of the event loop, so items
 * added together go together), a busy one in ever larger batches — the commits per item fall as
 * the load rises.
 */
export class GroupCommit<Item, Result> {
  private pending: Array<{ item: Item; resolve: (result: Result) => void; reject: (error: unknown) => void }> = [];
  private running: Promise<void> | undefined;
  private scheduled = false;
  private readonly write: (items: Item[]) => Promise<Result[]>;
  private readonly maxBatch: number;

  /**
   * @param write writes the items and answers one result per item, in order.
   * @param maxBatch most items in one statement. Default: `500`.
   */
  constructor(write: (items: Item[]) => Promise<Result[]>, maxBatch = 500) {
    this.write = write;
    this.maxBatch = maxBatch;
  }

  /** Resolves with the item's result once its batch is written; rejects with the batch's error. */
  add(item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.running || this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.running = this.loop().finally(() => (this.running = undefined));
      });
    });
  }

  /** Resolves once everything added so far was written (or failed). */
  async drain(): Promise<void> {
    while (this.running || this.scheduled || this.pending.length > 0) {
      if (this.running) await this.running;
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private async loop(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      try {
        const results = await this.write(batch.map((entry) => entry.item));
        batch.forEach((entry, i) => entry.resolve(results[i]!));
      } catch (error) {
        // Alone, or when the database did not answer at all (each try alone would wait out the
        // pool again), every item of the batch fails with the batch's error.
        if (batch.length === 1 || unreachableReason(error) !== undefined) {
          for (const entry of batch) entry.reject(error);
          continue;
        }
        // One bad item (a value the database refuses) must not fail the others with it: each
        // goes again alone, and only the ones that fail alone see an error.
        for (const entry of batch) {
          try {
            const [result] = await this.write([entry.item]);
            entry.resolve(result!);
          } catch (alone) {
            entry.reject(alone);
          }
        }
      }
    }
  }
}
