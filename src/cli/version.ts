/**
 * `autoround --version`: the program's version, the commit it was built from, the Deno it runs on,
 * and a hash of the kernels it carries (every WGSL and PTX file), so two programs that print the
 * same line run the same GPU code.
 *
 *   autoround 0.1.0 (commit 0f3268f1c2d4, deno 2.9.6, kernels 3f9a0c1b2d4e)
 *   autoround 0.1.0 (source tree 0f3268f1c2d4, deno 2.9.6, kernels 3f9a0c1b2d4e)
 */
import { PTX_FILES } from "../../ffi/cuda/ptx.ts";
import { WGSL_FILES } from "../backend/webgpu/kernels.ts";
import { VERSION } from "../version.ts";
import { BUILD_COMMIT } from "./build_info.ts";

/** Every kernel source the program carries, by repository path, sorted by path. */
export function kernelSources(): [path: string, text: string][] {
  return Object.entries({ ...WGSL_FILES, ...PTX_FILES }).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}

/**
 * SHA-256 (hex) over the kernel sources: each file's path, its length in UTF-8 bytes and its bytes,
 * in path order. Equal to the hash of the files on disk when the program carries all of them as
 * they are (tests/cli_version_test.ts checks that).
 */
export async function kernelsHash(files: [string, string][] = kernelSources()): Promise<string> {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const [path, text] of files) {
    const bytes = enc.encode(text);
    parts.push(enc.encode(`${path}\0${bytes.length}\0`), bytes);
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (all.set(p, at), at += p.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The commit of the git work tree at `dir` (12 hex digits, `-dirty` when tracked files differ from
 * it), or undefined when there is none: no `.git`, no git program, no permission to run it.
 */
export async function gitCommit(dir: string): Promise<string | undefined> {
  try {
    await Deno.stat(`${dir}/.git`);
  } catch {
    return undefined;
  }
  const git = async (...args: string[]) => {
    const r = await new Deno.Command("git", { args: ["-C", dir, ...args], stdout: "piped", stderr: "null" })
      .output();
    return { ok: r.success, out: new TextDecoder().decode(r.stdout).trim() };
  };
  try {
    const head = await git("rev-parse", "--short=12", "HEAD");
    if (!head.ok || !/^[0-9a-f]+$/.test(head.out)) return undefined;
    const status = await git("status", "--porcelain", "--untracked-files=no");
    return status.ok && status.out !== "" ? `${head.out}-dirty` : head.out;
  } catch {
    return undefined;
  }
}

/** The repository a source-tree program runs from (undefined in a bundle: its module is one file). */
function sourceRoot(): string | undefined {
  const url = new URL("../../", import.meta.url);
  return url.protocol === "file:" && import.meta.url.endsWith("/src/cli/version.ts")
    ? decodeURIComponent(url.pathname).replace(/\/$/, "")
    : undefined;
}

/**
 * The `--version` line. A built program prints the commit it was built from; from source, the
 * source tree's commit when git can tell (`source tree unknown` otherwise); never fails.
 */
export async function versionLine(): Promise<string> {
  let commit: string;
  if (BUILD_COMMIT !== null) commit = `commit ${BUILD_COMMIT}`;
  else {
    const root = sourceRoot();
    commit = `source tree ${(root && await gitCommit(root)) ?? "unknown"}`;
  }
  const kernels = (await kernelsHash()).slice(0, 12);
  return `autoround ${VERSION} (${commit}, deno ${Deno.version.deno}, kernels ${kernels})`;
}
