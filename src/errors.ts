/**
 * Typed errors that the CLI turns into one line and a non-zero exit code.
 *
 * Every error a user can cause (a bad path, a corrupt file, an unsupported scheme) is one of these,
 * carrying the file and, where it helps, the field that is wrong. Anything else is a bug and gets a
 * stack trace.
 *
 * @example
 * ```ts
 * throw new FormatError("header length 9999 runs past the end of the file", "model.safetensors");
 * ```
 */
export class AutoRoundError extends Error {
  /** The file or folder the problem is about, when there is one. */
  readonly file?: string;
  /** Process exit code the CLI uses for this kind of error. */
  readonly exitCode: number = 1;

  constructor(message: string, file?: string) {
    super(message);
    this.name = new.target.name;
    this.file = file;
  }

  /**
   * One line for the terminal: `error: <file>: <message>`. Messages quote what a file said, so line
   * breaks and other control characters are escaped and an overlong line keeps its start and end.
   */
  oneLine(): string {
    return terminalLine(this.file ? `${this.file}: ${this.message}` : this.message);
  }
}

/** Longest line {@link AutoRoundError.oneLine} prints; longer ones keep their start and end. */
export const MAX_ERROR_LINE = 2000;

/** `s` with control characters escaped (`\n`, `\u0000`) and cut to at most `max` characters. */
export function terminalLine(s: string, max = MAX_ERROR_LINE): string {
  const flat = s.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) =>
      ({ "\n": "\\n", "\r": "\\r", "\t": "\\t" })[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  if (flat.length <= max) return flat;
  const half = Math.floor((max - 25) / 2);
  return `${flat.slice(0, half)} … (${flat.length - 2 * half} characters) … ${flat.slice(-half)}`;
}

/**
 * A value for an error message: JSON text (strings quoted), control characters escaped, at most
 * `max` characters. Files say anything; a message shows what it said without letting a megabyte
 * string or a line break through.
 *
 * @example
 * ```ts
 * quote("F7"); // "\"F7\""
 * quote("x".repeat(1000), 10); // "\"xxxxxxxx… (1002 characters)"
 * ```
 */
export function quote(value: unknown, max = 80): string {
  let text: string;
  try {
    text = typeof value === "bigint" ? String(value) : JSON.stringify(value) ?? String(value);
  } catch { // a cycle, or nesting deeper than the stack
    text = Array.isArray(value) ? "[…]" : "{…}";
  }
  text = terminalLine(text, Number.MAX_SAFE_INTEGER);
  return text.length <= max ? text : `${text.slice(0, max - 1)}… (${text.length} characters)`;
}

/** Bad command-line usage: unknown flag, invalid scheme or group size, conflicting options. */
export class UsageError extends AutoRoundError {
  override readonly exitCode = 2;
}

/** A path that does not exist, cannot be read, or cannot be written. */
export class InputError extends AutoRoundError {}

/** A file whose bytes do not follow its format (safetensors header, GGUF, JSON config). */
export class FormatError extends AutoRoundError {}

/** A model this program does not know how to run (architecture, feature). */
export class UnsupportedError extends AutoRoundError {}

/** A quantization setting that cannot be applied (bits, group size, layer_config). */
export class QuantizeError extends AutoRoundError {}

/** A backend that cannot be used (no GPU, missing library, out of device memory). */
export class BackendError extends AutoRoundError {}

/**
 * The device refused the work: out of memory, a buffer or binding over its limits, a validation
 * error, a lost device. The message names the operation, the sizes and the device limit; the
 * one-line form adds what to try.
 */
export class DeviceError extends BackendError {
  /** What a user can change, appended to the one-line message. */
  readonly advice: string;
  constructor(message: string, advice = "try --low_gpu_mem_usage or a smaller --batch_size") {
    super(message);
    this.advice = advice;
  }
  override oneLine(): string {
    return this.advice ? `${super.oneLine()}; ${this.advice}` : super.oneLine();
  }
}

/**
 * Whether `e` is an operating-system error: Deno's file-system errors carry the errno name as
 * `code` ("ENOSPC" disk full, "EDQUOT", "EROFS" read-only, "EACCES", "EIO", ...).
 */
export function isOsError(e: unknown): e is Error & { code: string } {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

/**
 * An OS error met while writing `file` as an InputError (`<file>: cannot write: No space left on
 * device (os error 28)`): the disk, not the program, needs attention. Anything else is returned as it is.
 *
 * @example
 * ```ts
 * try {
 *   await Deno.writeTextFile(path, text);
 * } catch (e) {
 *   throw writeErrorOf(e, path);
 * }
 * ```
 */
export function writeErrorOf(e: unknown, file: string): unknown {
  if (!isOsError(e)) return e;
  // Deno appends the operation and its paths ("…(os error 28): writefile '/x/config.json'"): the
  // file is named once, in front.
  const os = /^.*?\(os error \d+\)/.exec(e.message)?.[0] ?? e.message;
  return new InputError(`cannot write: ${os}`, file);
}

/**
 * A name from a file (a key, a tensor name) for an error message: as it is when it is a plain
 * identifier-like name of at most 80 characters, else {@link quote}d.
 *
 * @example
 * ```ts
 * plainName("bits"); // "bits"
 * plainName("a\nb"); // "\"a\\nb\""
 * ```
 */
export function plainName(name: string): string {
  return /^[\w.:/-]{1,80}$/.test(name) ? name : quote(name);
}
