/**
 * The round robin of claims across tenants (see `claimJobs`, `dueConcurrencyKeys` and
 * `claimDeliveries`): a round visits the tenants in byte order starting after a cursor and
 * wrapping around; each claimer keeps its own cursor, moved to where its last claim ended, so
 * that when there are more tenants with work than free slots, the next claim serves the
 * tenants the last one did not reach.
 */

/** Byte order of the UTF-8 text: how PostgreSQL's `"C"` collation, which the claims use, compares. */
export const compareBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Where `tenant` falls in a round that starts after `after`: compare these. */
const roundPosition = (tenant: string, after: string): [number, string] => [compareBytes(tenant, after) > 0 ? 0 : 1, tenant];

/**
 * The tenant a claim's round ended on, for the next claim to start after: of the tenants
 * served (with how many items each got), the one holding the last turn — the most items, then
 * the last in round order. Undefined when nothing was served (the cursor stays).
 */
export function roundEnd(served: Iterable<string>, after: string): string | undefined {
  const counts = new Map<string, number>();
  for (const tenant of served) counts.set(tenant, (counts.get(tenant) ?? 0) + 1);
  let end: string | undefined;
  for (const [tenant, count] of counts) {
    if (end === undefined) {
      end = tenant;
      continue;
    }
    const endCount = counts.get(end)!;
    if (count !== endCount) {
      if (count > endCount) end = tenant;
      continue;
    }
    const [lap, name] = roundPosition(tenant, after);
    const [endLap, endName] = roundPosition(end, after);
    if (lap > endLap || (lap === endLap && compareBytes(name, endName) > 0)) end = tenant;
  }
  return end;
}
