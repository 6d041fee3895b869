/**
 * Test assertions with @std/assert's names, built on `node:assert` because JSR is unreachable where
 * this project is built. Where JSR is reachable this module can become
 * `export * from "@std/assert"` plus the two numeric helpers at the bottom.
 */
import nodeAssert from "node:assert/strict";

/** Throws unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep structural equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/**
 * assertEquals, and the same own-key order in every object at every depth: what a comparison of
 * JSON.stringify texts also checks (for tests that compared objects that way).
 */
export function assertEqualsInOrder<T>(actual: T, expected: T, msg?: string): void {
  assertEquals(actual, expected, msg);
  const order = (v: unknown): unknown =>
    v !== null && typeof v === "object" ? Object.entries(v).map(([k, x]) => [k, order(x)]) : null;
  assertEquals(order(actual), order(expected), `${msg ? msg + ": " : ""}key order`);
}

/** |actual − expected| ≤ tolerance. */
export function assertAlmostEquals(actual: number, expected: number, tolerance = 1e-7, msg?: string): void {
  const diff = Math.abs(actual - expected);
  if (!(diff <= tolerance)) {
    throw new nodeAssert.AssertionError({
      message: `${msg ? msg + ": " : ""}expected ${expected}, got ${actual} (|diff| ${diff} > ${tolerance})`,
    });
  }
}

type ErrorClass<E> = abstract new (...args: never[]) => E;

/** `fn` throws an instance of `cls` whose message includes `includes`; returns it. */
export function assertThrows<E extends Error>(fn: () => unknown, cls: ErrorClass<E>, includes = ""): E {
  try {
    fn();
  } catch (e) {
    assert(
      e instanceof cls,
      `expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
    );
    assert((e as Error).message.includes(includes), `message "${(e as Error).message}" lacks "${includes}"`);
    return e as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** `fn` rejects with an instance of `cls` whose message includes `includes`; returns it. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: ErrorClass<E>,
  includes = "",
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    assert(
      e instanceof cls,
      `expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
    );
    assert((e as Error).message.includes(includes), `message "${(e as Error).message}" lacks "${includes}"`);
    return e as E;
  }
  throw new nodeAssert.AssertionError({ message: `expected ${cls.name} to be thrown` });
}

/** Relative error ‖a − b‖₂ / ‖b‖₂ (METHOD.md's measure); NaN anywhere gives Infinity. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths differ");
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** max |a − b| / max |b|. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assertEquals(a.length, b.length, "lengths differ");
  let m = 0, d = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    m = Math.max(m, Math.abs(a[i] - b[i]));
    d = Math.max(d, Math.abs(b[i]));
  }
  return d === 0 ? m : m / d;
}

/** Absolute path of a file under tests/fixtures. */
export function fixture(rel: string): string {
  return new URL(`./fixtures/${rel}`, import.meta.url).pathname;
}

/**
 * Run `fn` in a fresh temporary folder (its real path: macOS's /tmp is a link), removed afterwards
 * whatever happens; returns what `fn` returns.
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix }));
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Element-wise `===` (0 equals −0, as numeric comparison in torch does). */
export function assertSameNumbers(a: ArrayLike<number>, b: ArrayLike<number>, msg = ""): void {
  assertEquals(a.length, b.length, `${msg} length`);
  for (let i = 0; i < a.length; i++) assert(a[i] === b[i], `${msg}[${i}]: ${a[i]} vs ${b[i]}`);
}

/** Hex sha256 of bytes (compares our tensors with hashes recorded from auto-round's files). */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}
