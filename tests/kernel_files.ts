/** The kernel files on disk, for the tests that compare them with what the program carries. */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The kernel files on disk, by repository path, sorted. */
export async function diskKernels(root = ROOT): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const [dir, ext] of [["wgsl", ".wgsl"], ["ffi/cuda", ".ptx"]]) {
    for await (const e of Deno.readDir(`${root}/${dir}`)) {
      if (e.isFile && e.name.endsWith(ext)) {
        out.push([`${dir}/${e.name}`, await Deno.readTextFile(`${root}/${dir}/${e.name}`)]);
      }
    }
  }
  return out.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}
