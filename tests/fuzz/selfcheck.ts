/**
 * A target whose cases misbehave on purpose, one way per case index, so that the harness itself is
 * tested: each must get the verdict in {@link SELF_CHECK_VERDICTS}. A harness that stopped seeing
 * crashes, hangs, huge allocations, multi-line messages, console output or stray rejections would
 * pass every real parser vacuously; this target makes that visible.
 */
import { FormatError } from "../../src/errors.ts";
import type { FuzzTarget } from "./target.ts";

/** What case `i` does, and the verdict it must get. */
export const SELF_CHECK_VERDICTS: [string, string][] = [
  ["returns", "accepted"],
  ["throws a FormatError", "clean"],
  ["throws a TypeError", "crash"],
  ["throws a plain Error", "crash"],
  ["never returns", "hang"],
  ["allocates 64 GiB", "oom"],
  ["throws a FormatError of two lines", "message"],
  ["writes to console.error", "message"],
  ["leaves a rejected promise unhandled", "crash"],
];

/** The misbehaving target ("selfcheck"); not among the parsers a plain run fuzzes. */
export const selfCheckTarget: FuzzTarget = {
  name: "selfcheck",
  build: (_rng, _ctx, dir, index = 0) =>
    Promise.resolve({
      path: dir,
      mode: SELF_CHECK_VERDICTS[index % SELF_CHECK_VERDICTS.length][0],
      steps: [],
      dir,
    }),
  async run(c) {
    switch (c.mode) {
      case "returns":
        return;
      case "throws a FormatError":
        throw new FormatError("bad field", "x.json");
      case "throws a TypeError":
        return (undefined as unknown as { f(): void }).f();
      case "throws a plain Error":
        throw new Error("not typed");
      case "never returns":
        for (;;) { /* spin */ }
      case "allocates 64 GiB":
        new Float64Array(2 ** 33);
        return;
      case "throws a FormatError of two lines": {
        const e = new FormatError("line one");
        e.oneLine = () => "line one\nline two";
        throw e;
      }
      case "writes to console.error":
        console.error("a library talking");
        return;
      default:
        Promise.reject(new Error("nobody waits for me"));
        await new Promise((r) => setTimeout(r, 0));
    }
  },
  cli: () => ["--version"],
};
