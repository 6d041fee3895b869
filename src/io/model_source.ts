/**
 * Where a model (or data set) named on the command line lives on disk: a local folder, or a
 * snapshot in the local Hugging Face cache. Never touches the network: this program runs where
 * nothing but the disk can be reached, so a model must be downloaded beforehand.
 *
 * Cache layout (huggingface_hub, "Understand caching"): `<cache>/models--{org}--{name}/` holds
 * `refs/<branch>` (a file with a commit hash) and `snapshots/<commit>/` (the files).
 */

import { InputError } from "../errors.ts";

/** The environment variables this module reads; `Deno.env` satisfies it. */
export interface EnvReader {
  get(key: string): string | undefined;
}

/** A Hugging Face repo id: `name` or `org/name` (letters, digits, `-`, `_`, `.`; no `--` or `..`). */
function isRepoId(s: string): boolean {
  return /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/.test(s) && !s.includes("--") && !s.includes("..");
}

/**
 * Resolve a `--model` argument to an absolute folder holding `config.json`: `spec` itself when it is
 * a folder, else the snapshot of the Hugging Face repo id `spec` in the local cache (the revision in
 * `refs/main`, else the only snapshot, else the most recently modified one).
 *
 * @example
 * ```ts
 * await resolveModelDir("tests/fixtures/stories260K"); // "/…/tests/fixtures/stories260K"
 * await resolveModelDir("Qwen/Qwen3-0.6B"); // "~/.cache/huggingface/hub/models--Qwen--Qwen3-0.6B/snapshots/<rev>"
 * ```
 */
export async function resolveModelDir(spec: string, env: EnvReader = Deno.env): Promise<string> {
  const local = await statOrUndefined(spec);
  let dir: string | undefined;
  if (local?.isDirectory) dir = await Deno.realPath(spec);
  else if (!local && isRepoId(spec)) dir = await findSnapshot(hubCacheDir(env), "models", spec);
  if (!dir) {
    const looked = [local ? `${spec} (not a folder)` : spec];
    if (!local && isRepoId(spec)) looked.push(`${repoFolder(hubCacheDir(env), "models", spec)}/snapshots`);
    throw new InputError(
      `model folder or Hugging Face cache entry not found: ${spec} (looked in ${looked.join(", ")})`,
      spec,
    );
  }
  if (!(await statOrUndefined(`${dir}/config.json`))?.isFile) {
    throw new InputError("model folder has no config.json", dir);
  }
  return dir;
}

/**
 * The cached snapshot folder of the Hugging Face data set `repoId` (same rules as models), or
 * undefined when the cache has none.
 *
 * @example
 * ```ts
 * const dir = await resolveDatasetCacheDir("NeelNanda/pile-10k");
 * if (dir) console.log(`using ${dir}`);
 * ```
 */
export async function resolveDatasetCacheDir(
  repoId: string,
  env: EnvReader = Deno.env,
): Promise<string | undefined> {
  if (!isRepoId(repoId)) return undefined;
  return await findSnapshot(hubCacheDir(env), "datasets", repoId);
}

/**
 * The hub cache folder, in huggingface_hub's order (constants.py): `HF_HUB_CACHE`, the older
 * `HUGGINGFACE_HUB_CACHE`, `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`.
 *
 * @example
 * ```ts
 * hubCacheDir({ get: (k) => ({ HF_HOME: "/data/hf" })[k] }); // "/data/hf/hub"
 * ```
 */
export function hubCacheDir(env: EnvReader = Deno.env): string {
  const home = env.get("HOME") ?? env.get("USERPROFILE") ?? "";
  const expand = (p: string) => (p === "~" || p.startsWith("~/") ? home + p.slice(1) : p);
  const direct = env.get("HF_HUB_CACHE") ?? env.get("HUGGINGFACE_HUB_CACHE");
  if (direct) return expand(direct);
  const hfHome = env.get("HF_HOME");
  if (hfHome) return `${expand(hfHome)}/hub`;
  const xdg = env.get("XDG_CACHE_HOME");
  return `${xdg ? expand(xdg) : `${home}/.cache`}/huggingface/hub`;
}

function repoFolder(cache: string, kind: "models" | "datasets", repoId: string): string {
  return `${cache}/${kind}--${repoId.replace("/", "--")}`;
}

async function findSnapshot(cache: string, kind: "models" | "datasets", repoId: string) {
  const repo = repoFolder(cache, kind, repoId);
  const snapshots = `${repo}/snapshots`;
  const ref = await readTextOrUndefined(`${repo}/refs/main`);
  if (ref !== undefined) {
    const rev = ref.trim();
    if ((await statOrUndefined(`${snapshots}/${rev}`))?.isDirectory) {
      return await Deno.realPath(`${snapshots}/${rev}`);
    }
    // A refs/main whose snapshot is gone means a broken cache; guessing another revision would
    // silently quantize different weights.
    throw new InputError(`refs/main names revision ${rev}, but snapshots/${rev} is missing`, repo);
  }
  const revs: { path: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(snapshots)) {
      if (!e.isDirectory) continue;
      const st = await Deno.stat(`${snapshots}/${e.name}`);
      revs.push({ path: `${snapshots}/${e.name}`, mtime: st.mtime?.getTime() ?? 0 });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw new InputError(`cannot read the Hugging Face cache: ${(e as Error).message}`, snapshots);
  }
  if (revs.length === 0) return undefined;
  revs.sort((a, b) => b.mtime - a.mtime);
  return await Deno.realPath(revs[0].path);
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw new InputError(`cannot read: ${(e as Error).message}`, path);
  }
}

async function readTextOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw new InputError(`cannot read: ${(e as Error).message}`, path);
  }
}
