/**
 * All-or-nothing output folders: everything is written into a temporary sibling folder,
 * `<final>.partial`, which replaces the final folder only on {@link OutputFolder.commit}. A run that
 * fails half way never leaves a half-written model where a finished one is expected, and never
 * destroys the previous output.
 *
 * The temporary folder's name is fixed so that a run killed outright (kill -9, a lost machine) can be
 * found again and continued (`quantize --resume`, whose journal lives inside it). A lock on
 * `<final>.partial/.lock` (an OS file lock, released when its process dies, however it dies) tells a
 * live run's folder from a dead one's: a second run writing the same output fails at once instead of
 * writing over the first.
 */

import { InputError } from "../errors.ts";

/** The lock file inside the temporary folder (removed from the final folder after commit). */
const LOCK_NAME = ".lock";

/** How {@link OutputFolder.create} treats a temporary folder left by a run that died. */
export interface OutputFolderOptions {
  /**
   * Adopt it: keep `keep` (the resume journal) and clear everything else; without this the dead
   * run's folder is removed and the run starts empty.
   */
  resume?: boolean;
  /** Entries of the temporary folder that survive adoption (names, not paths). */
  keep?: string[];
  /**
   * SIGINT/SIGTERM leave the temporary folder (unlocked) instead of removing it, so that running the
   * command again continues it: for resumable runs, whose scheduler may stop them at any time.
   */
  keepOnSignal?: boolean;
}

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
  /** Folders created and neither committed nor aborted: what an interrupted process removes. */
  static readonly #open = new Set<OutputFolder>();
  /** The temporary folder to write into (a sibling of `finalDir`, so the final rename is atomic). */
  readonly path: string;
  /** Absolute path the folder gets on commit. */
  readonly finalDir: string;
  /** True when the folder was left by a dead run and adopted (OutputFolderOptions.resume). */
  readonly adopted: boolean;
  /** True when a dead run's folder was found and removed (not adopted). */
  readonly discardedStale: boolean;
  #state: "open" | "committed" | "aborted" | "kept" = "open";
  #keepOnSignal = false;
  #lock: Deno.FsFile;

  private constructor(finalDir: string, path: string, lock: Deno.FsFile, adopted: boolean, stale: boolean) {
    this.finalDir = finalDir;
    this.path = path;
    this.#lock = lock;
    this.adopted = adopted;
    this.discardedStale = stale;
  }

  /**
   * Create (or, with `resume`, adopt) the temporary folder `<finalDir>.partial` and lock it,
   * creating `finalDir`'s parent if needed. Fails with InputError("cannot write output folder: …")
   * before any work is done when that is impossible, when `finalDir` exists and is not a folder, or
   * when another live run holds the lock.
   */
  static async create(finalDir: string, options: OutputFolderOptions = {}): Promise<OutputFolder> {
    const final = absolutePath(finalDir);
    const fail = (reason: string) => new InputError(`cannot write output folder: ${reason}`, finalDir);
    if (final === "/") throw fail("the root folder cannot be replaced");
    const existing = await statOrUndefined(final);
    if (existing && !existing.isDirectory) throw fail("it exists and is not a folder");
    const tmp = `${final}.partial`;
    let lock: Deno.FsFile | undefined;
    try {
      await Deno.mkdir(final.slice(0, final.lastIndexOf("/")) || "/", { recursive: true });
      const left = await statOrUndefined(tmp);
      if (left && !left.isDirectory) throw fail(`${tmp} exists and is not a folder`);
      await Deno.mkdir(tmp, { recursive: true });
      lock = await Deno.open(`${tmp}/${LOCK_NAME}`, { read: true, write: true, create: true });
      if (!(await lock.tryLock(true))) {
        throw fail(`another autoround run is writing it (its temporary folder ${tmp} is locked)`);
      }
      let adopted = false;
      if (left) {
        const keep = new Set([LOCK_NAME, ...(options.resume ? options.keep ?? [] : [])]);
        for await (const e of Deno.readDir(tmp)) {
          if (!keep.has(e.name)) await Deno.remove(`${tmp}/${e.name}`, { recursive: true });
        }
        adopted = options.resume === true;
      }
      const folder = new OutputFolder(final, tmp, lock, adopted, left !== undefined && !adopted);
      folder.#keepOnSignal = options.keepOnSignal === true;
      OutputFolder.#open.add(folder);
      return folder;
    } catch (e) {
      lock?.close();
      if (e instanceof InputError) throw e;
      throw fail((e as Error).message);
    }
  }

  /**
   * Remove the temporary folder of every open OutputFolder at once (or leave it, unlocked, where
   * keepOnSignal was asked), synchronously: for a signal handler that exits the process next
   * (src/cli/interrupt.ts), so no other code runs in between. Returns each folder's final path,
   * whether it was kept, and the error when its temporary folder could not be removed.
   */
  static abortAllOpen(): { finalDir: string; kept?: boolean; error?: Error }[] {
    const out: { finalDir: string; kept?: boolean; error?: Error }[] = [];
    for (const f of OutputFolder.#open) {
      if (f.#keepOnSignal) {
        f.keep();
        out.push({ finalDir: f.finalDir, kept: true });
        continue;
      }
      f.#state = "aborted";
      OutputFolder.#open.delete(f);
      try {
        removeWhileWritten(f.path);
        out.push({ finalDir: f.finalDir });
      } catch (e) {
        out.push({ finalDir: f.finalDir, error: e as Error });
      } finally {
        f.#lock.close();
      }
    }
    return out;
  }

  /**
   * Move the temporary folder to `finalDir`. An existing `finalDir` is first moved aside, then
   * removed once the new one is in place; if the swap fails, the old folder is put back. The
   * renames and the removal are synchronous: a signal handler (abortAllOpen) cannot run between
   * them and find the old output moved aside and the new one not yet in place.
   */
  async commit(): Promise<void> {
    if (this.#state !== "open") throw new Error(`OutputFolder.commit after ${this.#state}`);
    const existing = await statOrUndefined(this.finalDir);
    if (this.#state !== "open") throw new Error(`OutputFolder.commit after ${this.#state}`);
    if (!existing) {
      this.#rename(this.path, this.finalDir);
      this.#committed();
      return;
    }
    if (!existing.isDirectory) {
      throw new InputError("cannot write output folder: it exists and is not a folder", this.finalDir);
    }
    const aside = `${this.finalDir}.old-${Deno.pid}-${randomTag()}`;
    this.#rename(this.finalDir, aside);
    try {
      this.#rename(this.path, this.finalDir);
    } catch (e) {
      try {
        Deno.renameSync(aside, this.finalDir);
      } catch { /* the error above says what failed */ }
      throw e;
    }
    this.#committed();
    try {
      Deno.removeSync(aside, { recursive: true });
    } catch (e) {
      throw new InputError(
        `output written, but the previous output moved aside could not be removed: ${(e as Error).message}`,
        aside,
      );
    }
  }

  /**
   * Remove the temporary folder and everything in it. No-op after commit or a previous abort.
   * Synchronous inside, like commit, so that a signal handler never meets a half-removed folder.
   */
  // deno-lint-ignore require-await
  async abort(): Promise<void> {
    if (this.#state !== "open") return;
    this.#state = "aborted";
    OutputFolder.#open.delete(this);
    try {
      Deno.removeSync(this.path, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    } finally {
      this.#lock.close();
    }
  }

  /**
   * Leave the temporary folder where it is, unlocked, for a later `--resume` (a resume refused for
   * other settings must not destroy the run it found). No-op unless open.
   */
  keep(): void {
    if (this.#state !== "open") return;
    this.#state = "kept";
    OutputFolder.#open.delete(this);
    this.#lock.close();
  }

  /** After the rename: the lock file moved with the folder; it is no output of the run. */
  #committed(): void {
    this.#state = "committed";
    OutputFolder.#open.delete(this);
    this.#lock.close();
    try {
      Deno.removeSync(`${this.finalDir}/${LOCK_NAME}`);
    } catch { /* already gone */ }
  }

  /** Aborts unless committed, so `await using` cleans up on every error path. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }

  #rename(from: string, to: string): void {
    try {
      Deno.renameSync(from, to);
    } catch (e) {
      throw new InputError(`cannot write output folder: ${(e as Error).message}`, this.finalDir);
    }
  }
}

/**
 * Remove `path` (a folder) although file operations started before this call may still be running
 * on Deno's I/O threads: a signal handler runs between two turns of the event loop, but an
 * exporter's `open`, `mkdir` or shard rename already handed to the thread pool completes on its
 * own. The folder is first renamed to a unique sibling (so that a late `open` below the old path
 * fails instead of adding to it), that sibling is removed, retrying while a late entry makes the
 * last `rmdir` fail, and a folder a late recursive `mkdir` created again under the old path goes
 * too. Synchronous throughout. Throws the last error when the folder cannot be removed.
 */
function removeWhileWritten(path: string): void {
  const trash = `${path}.removing-${Deno.pid}-${randomTag()}`;
  let target = path;
  try {
    Deno.renameSync(path, trash);
    target = trash;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    // Cannot rename (odd file system): remove it where it is.
  }
  const ATTEMPTS = 20;
  for (const p of target === path ? [path] : [trash, path]) {
    for (let i = 1;; i++) {
      try {
        Deno.removeSync(p, { recursive: true });
        break;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) break;
        if (i === ATTEMPTS) throw e;
      }
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
