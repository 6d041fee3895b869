/** Assertion helpers for the eval tests (no JSR access here for @std/assert). */

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

export function assertEquals(actual: unknown, expected: unknown, msg = ""): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg ? msg + ": " : ""}expected ${e.slice(0, 600)}, got ${a.slice(0, 600)}`);
}

export function assertClose(actual: number, expected: number, tol: number, msg = ""): void {
  const err = Math.abs(actual - expected);
  if (!(err <= tol * Math.max(1, Math.abs(expected)))) {
    throw new Error(
      `${msg ? msg + ": " : ""}expected ${expected}, got ${actual} (|diff| ${err}, tol ${tol})`,
    );
  }
}

export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: new (...args: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof cls) return e;
    throw new Error(`expected ${cls.name}, got ${e}`);
  }
  throw new Error(`expected ${cls.name}, nothing thrown`);
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
