import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Housekeeping, type HousekeepingTask } from '../src/maintenance/housekeeping.ts';
import { deferred, eventually, silentLogger } from './helpers.ts';

/** A task whose rounds wait on a gate the test opens, counting starts and ends. */
function gatedTask(name: string, everyMs: number) {
  let gate = deferred();
  const counts = { started: 0, finished: 0 };
  const task: HousekeepingTask = {
    name,
    everyMs,
    async run() {
      counts.started++;
      await gate.promise;
      counts.finished++;
    },
  };
  return {
    task,
    counts,
    open() {
      gate.resolve();
      gate = deferred();
    },
  };
}

describe('housekeeping', () => {
  it('runs a task at once, never two rounds of it at a time, and again on demand', async () => {
    const housekeeping = new Housekeeping(silentLogger);
    const chore = gatedTask('chore', 10);
    try {
      housekeeping.schedule(chore.task);
      assert.equal(chore.counts.started, 1);
      // The schedule ticks many times while the round is held: no second round starts.
      await new Promise((resolve) => setTimeout(resolve, 60));
      assert.equal(chore.counts.started, 1);
      // runNow waits for the round under way, then runs one of its own.
      const onDemand = housekeeping.runNow('chore');
      chore.open();
      await eventually(() => chore.counts.started === 2, 'on-demand round started');
      chore.open();
      await onDemand;
      assert.equal(chore.counts.finished, 2);
      await assert.rejects(housekeeping.runNow('nothing'), /No housekeeping task named "nothing"/);
    } finally {
      chore.open();
      await housekeeping.stop();
    }
  });

  it('keeps the shortest period asked for a task, logs a failing round and goes on', async () => {
    const housekeeping = new Housekeeping(silentLogger);
    let runs = 0;
    const failing: HousekeepingTask = {
      name: 'flaky',
      everyMs: 3_600_000,
      async run() {
        runs++;
        throw new Error('the database is away');
      },
    };
    try {
      housekeeping.schedule(failing);
      await eventually(() => runs === 1, 'first round');
      // An hourly period would not run again within this test; the 20 ms one asked for next does.
      housekeeping.schedule({ ...failing, everyMs: 20 });
      await eventually(() => runs >= 3, 'rounds on the shorter period');
    } finally {
      await housekeeping.stop();
    }
    const after = runs;
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(runs, after, 'no round after stop()');
  });

  it('runs a task due every tick on every tick, even when the timer fires a little early by the wall clock', async (t) => {
    // The interval timer is driven by hand, and the wall clock set for each tick: 1 ms short
    // of a whole period since the last round, as a timer firing early would see it.
    t.mock.timers.enable({ apis: ['setInterval'] });
    let wallClock = 1_000_000;
    t.mock.method(Date, 'now', () => wallClock);
    const housekeeping = new Housekeeping(silentLogger);
    let rounds = 0;
    try {
      housekeeping.schedule({ name: 'reclaim', everyMs: 2000, run: async () => void rounds++ });
      assert.equal(rounds, 1, 'the first round runs at once');
      for (let tick = 2; tick <= 4; tick++) {
        await new Promise(setImmediate); // the previous round settles
        wallClock += 1999;
        t.mock.timers.tick(2000);
        assert.equal(rounds, tick, `round ${tick} runs on its tick`);
      }
    } finally {
      await housekeeping.stop();
    }
  });
});
