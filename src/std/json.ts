/**
 * JSON helpers for documents read from files: how deeply a parsed value nests, measured without
 * recursion. `JSON.parse` accepts 100 000 levels of `[`, but `JSON.stringify` and any recursive walk
 * then overflow the stack, so a reader that passes a document on checks its depth first.
 */

/**
 * Whether `value` nests deeper than `limit` levels of arrays and objects (counted iteratively).
 *
 * @example
 * ```ts
 * nestsDeeperThan({ a: [1, { b: 2 }] }, 2); // true (3 levels)
 * nestsDeeperThan(JSON.parse("[".repeat(1e5) + "]".repeat(1e5)), 64); // true, no stack overflow
 * ```
 */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth + 1 > limit) return true;
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) stack.push([x, depth + 1]);
  }
  return false;
}
