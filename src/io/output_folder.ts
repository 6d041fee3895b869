/**
 * All-or-nothing output folders: everything is written into a temporary sibling folder, which
 * replaces the final folder only on {@link OutputFolder.commit}. A run that fails half way (or is
 * interrupted before commit) never leaves a half-written model where a finished one is expected,
 * and never destroys the previous output.
 */

import { InputError } from "../errors.ts";

/**
 * A temporary folder that becomes `finalDir` on commit and disappears otherwise.
 *
 * @example
 * ```ts
 * await using out = await OutputFolder.create("./demo-out");
 * await Deno.writeTextFile(`${out.path}/config.json`, "{}");
 * await out.commit(); // without this line, disposal removes out.path and ./demo-out is untouched
 * ```
 */
export class OutputFolder implements AsyncDisposable {
  /** The temporary folder to write into (a sibling of `finalDir`, so the final rename is atomic). */
  readonly path: string;
  /** Absolute path the folder gets on commit. */
  readonly finalDir: string;
  #state: "open" | "committed" | "aborted" = "open";

  private constructor(finalDir: string, path: string) {
    this.finalDir = finalDir;
    this.path = path;
  }

  /**
   * Create the temporary folder `<finalDir>.partial-<pid>-<random>`, creating `finalDir`'s parent
   * if needed. Fails with InputError("cannot write output folder: …") before any work is done when
   * that is impossible, or when `finalDir` exists and is not a folder.
   */
  static async create(finalDir: string): Promise<OutputFolder> {
    const final = absolutePath(finalDir);
    const fail = (reason: string) => new InputError(`cannot write output folder: ${reason}`, finalDir);
    if (final === "/") throw fail("the root folder cannot be replaced");
    const existing = await statOrUndefined(final);
    if (existing && !existing.isDirectory) throw fail("it exists and is not a folder");
    const tmp = `${final}.partial-${Deno.pid}-${randomTag()}`;
    try {
      await Deno.mkdir(final.slice(0, final.lastIndexOf("/")) || "/", { recursive: true });
      await Deno.mkdir(tmp);
    } catch (e) {
      throw fail((e as Error).message);
    }
    return new OutputFolder(final, tmp);
  }

  /**
   * Move the temporary folder to `finalDir`. An existing `finalDir` is first moved aside, then
   * removed once the new one is in place; if the swap fails, the old folder is put back.
   */
  async commit(): Promise<void> {
    if (this.#state !== "open") throw new Error(`OutputFolder.commit after ${this.#state}`);
    const existing = await statOrUndefined(this.finalDir);
    if (!existing) {
      await this.#rename(this.path, this.finalDir);
      this.#state = "committed";
      return;
    }
    if (!existing.isDirectory) {
      throw new InputError("cannot write output folder: it exists and is not a folder", this.finalDir);
    }
    const aside = `${this.finalDir}.old-${Deno.pid}-${randomTag()}`;
    await this.#rename(this.finalDir, aside);
    try {
      await this.#rename(this.path, this.finalDir);
    } catch (e) {
      await Deno.rename(aside, this.finalDir).catch(() => {});
      throw e;
    }
    this.#state = "committed";
    try {
      await Deno.remove(aside, { recursive: true });
    } catch (e) {
      throw new InputError(
        `output written, but the previous output moved aside could not be removed: ${(e as Error).message}`,
        aside,
      );
    }
  }

  /** Remove the temporary folder and everything in it. No-op after commit or a previous abort. */
  async abort(): Promise<void> {
    if (this.#state !== "open") return;
    this.#state = "aborted";
    try {
      await Deno.remove(this.path, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /** Aborts unless committed, so `await using` cleans up on every error path. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }

  async #rename(from: string, to: string): Promise<void> {
    try {
      await Deno.rename(from, to);
    } catch (e) {
      throw new InputError(`cannot write output folder: ${(e as Error).message}`, this.finalDir);
    }
  }
}

/** `p` made absolute and normalized (POSIX; node:path is not type-checkable here without @types/node). */
function absolutePath(p: string): string {
  const parts: string[] = [];
  for (const seg of (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`).split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== "" && seg !== ".") parts.push(seg);
  }
  return "/" + parts.join("/");
}

function randomTag(): string {
  return Math.random().toString(36).slice(2, 10);
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw new InputError(`cannot write output folder: ${(e as Error).message}`, path);
  }
}
