/**
 * A tokenizer's chat template, compiled and rendered by `@huggingface/jinja` with the globals
 * transformers gives templates (`raise_exception`, `range`, `strftime_now`), inside limits: a
 * template comes with a downloaded model, and one that does not parse, fails while rendering, loops
 * for ever (`range(10**9)`, nested loops) or builds a gigantic string is a FormatError naming its
 * file, not a crash or a hang.
 *
 * @module
 */
import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { AutoRoundError, FormatError, quote } from "../errors.ts";

/** Evaluation steps one rendering may take: real templates take a few thousand per conversation. */
export const MAX_TEMPLATE_STEPS = 500_000;
/**
 * Items `range()` may produce in one rendering, all calls together: a loop over a range with an
 * empty body takes no evaluation step per item, so nested ranges are bounded here.
 */
export const MAX_TEMPLATE_RANGE = 200_000;
/** Longest string a rendering may build. */
export const MAX_TEMPLATE_CHARS = 4 * 1024 * 1024;

/** Thrown inside the interpreter when a limit is reached. */
class LimitReached extends Error {}

/** An interpreter that counts its steps and refuses oversized strings. */
class BoundedInterpreter extends Interpreter {
  #steps = 0;
  override evaluate(...args: Parameters<Interpreter["evaluate"]>): ReturnType<Interpreter["evaluate"]> {
    if (++this.#steps > MAX_TEMPLATE_STEPS) {
      throw new LimitReached(`rendering takes more than ${MAX_TEMPLATE_STEPS} steps (a runaway loop?)`);
    }
    const v = super.evaluate(...args);
    const value = (v as { value?: unknown }).value;
    if (typeof value === "string" && value.length > MAX_TEMPLATE_CHARS) {
      throw new LimitReached(`rendering builds a string of ${value.length} characters`);
    }
    return v;
  }
}

/** Python's `range` over plain numbers, drawing its items from a budget shared by one rendering. */
function boundedRange(budget: { left: number }): (start: number, stop?: number, step?: number) => number[] {
  return (start, stop, step = 1) => {
    if (stop === undefined) [start, stop] = [0, start];
    if ([start, stop, step].some((x) => typeof x !== "number" || !Number.isFinite(x))) {
      throw new LimitReached(`range(${quote(start)}, ${quote(stop)}, ${quote(step)}) needs finite numbers`);
    }
    if (step === 0) throw new LimitReached("range() step must not be zero");
    const n = Math.max(0, Math.ceil((stop - start) / step));
    budget.left -= n;
    if (budget.left < 0) {
      throw new LimitReached(`range() calls produce more than ${MAX_TEMPLATE_RANGE} items (a runaway loop?)`);
    }
    return Array.from({ length: n }, (_, i) => start + i * step);
  };
}

/** transformers' `strftime_now` with the directives `@huggingface/jinja` supports (%Y %m %d %b %B %H %M %%). */
function strftimeNow(format: unknown): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  const month = (style: "long" | "short") => new Intl.DateTimeFormat(undefined, { month: style }).format(d);
  const f: Record<string, () => string> = {
    "%Y": () => String(d.getFullYear()),
    "%m": () => pad(d.getMonth() + 1),
    "%d": () => pad(d.getDate()),
    "%b": () => month("short"),
    "%B": () => month("long"),
    "%H": () => pad(d.getHours()),
    "%M": () => pad(d.getMinutes()),
    "%%": () => "%",
  };
  return String(format).replace(/%[YmdbBHM%]/g, (t) => f[t]());
}

/** The message of anything a template or the interpreter threw, quoted on one line. */
function reason(e: unknown): string {
  return quote(e instanceof Error ? e.message : String(e), 200);
}

/**
 * A compiled chat template.
 *
 * @example
 * ```ts
 * const t = new ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", "chat_template.jinja");
 * t.render({ messages: [{ role: "user", content: "Hi" }] }); // "Hi"
 * ```
 */
export class ChatTemplate {
  readonly #template: Template;

  /** @throws {FormatError} the template does not parse */
  constructor(readonly source: string, readonly file: string) {
    try {
      this.#template = new Template(source);
    } catch (e) {
      throw new FormatError(`chat template does not parse: ${reason(e)}`, file);
    }
  }

  /** Render with `vars` (messages, special tokens, ...) on top of the globals. */
  render(vars: Record<string, unknown>): string {
    const env = new Environment();
    const globals: Record<string, unknown> = {
      false: false,
      true: true,
      none: null,
      False: false,
      True: true,
      None: null,
      raise_exception: (message: unknown) => {
        throw new FormatError(`chat template raised an exception: ${quote(String(message), 200)}`, this.file);
      },
      range: boundedRange({ left: MAX_TEMPLATE_RANGE }),
      strftime_now: strftimeNow,
    };
    try {
      for (const [k, v] of Object.entries(globals)) env.set(k, v);
      for (const [k, v] of Object.entries(vars)) if (!(k in globals)) env.set(k, v);
      const out = new BoundedInterpreter(env).run(this.#template.parsed).value;
      if (typeof out !== "string") throw new LimitReached(`rendering gave ${quote(out)}, not text`);
      return out;
    } catch (e) {
      if (e instanceof AutoRoundError) throw e;
      throw new FormatError(`chat template failed to render: ${reason(e)}`, this.file);
    }
  }
}
