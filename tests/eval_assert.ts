/** Eval-specific test helpers; the generic assertions come from ./assert.ts (re-exported here). */

export { assert, assertEquals, assertEqualsInOrder, assertRejects } from "./assert.ts";

export function assertClose(actual: number, expected: number, tol: number, msg = ""): void {
  const err = Math.abs(actual - expected);
  if (!(err <= tol * Math.max(1, Math.abs(expected)))) {
    throw new Error(
      `${msg ? msg + ": " : ""}expected ${expected}, got ${actual} (|diff| ${err}, tol ${tol})`,
    );
  }
}

export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
export const STORIES = FIXTURES + "stories260K";
export const EVAL_DATA = FIXTURES + "eval/data";
export const SHARED_DATA = new URL("../../shared/data", import.meta.url).pathname;

/** True when a path exists. */
export function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}
