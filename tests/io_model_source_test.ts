import { assert, assertEquals, assertRejects, withTempDir } from "./assert.ts";
import { InputError } from "../src/errors.ts";
import { hubCacheDir, resolveDatasetCacheDir, resolveModelDir } from "../src/io/model_source.ts";

const FIXTURE_DIR = new URL("./fixtures/stories260K", import.meta.url).pathname;

/** A fake environment: only the given variables are set. */
const envOf = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });

/** Build `<cache>/models--org--name/snapshots/<rev>/config.json` for each rev; returns the repo folder. */
async function fakeRepo(cache: string, kind: string, repoId: string, revs: string[], refsMain?: string) {
  const repo = `${cache}/${kind}--${repoId.replace("/", "--")}`;
  for (const rev of revs) {
    await Deno.mkdir(`${repo}/snapshots/${rev}`, { recursive: true });
    await Deno.writeTextFile(`${repo}/snapshots/${rev}/config.json`, `{"rev": "${rev}"}`);
  }
  if (refsMain !== undefined) {
    await Deno.mkdir(`${repo}/refs`, { recursive: true });
    await Deno.writeTextFile(`${repo}/refs/main`, refsMain);
  }
  return repo;
}

const withTemp = <T>(fn: (dir: string) => Promise<T>) => withTempDir("autoround-ms-test-", fn);

Deno.test("resolveModelDir: an existing folder with config.json is returned as an absolute path", async () => {
  // A relative path valid from any working folder (no chdir: test files may share the process).
  const up = "../".repeat(Deno.cwd().split("/").filter((s) => s).length);
  const rel = up + FIXTURE_DIR.slice(1);
  const got = await resolveModelDir(rel, envOf({}));
  assertEquals(got, await Deno.realPath(FIXTURE_DIR));
  assert(got.startsWith("/"), got);
});

Deno.test("resolveModelDir: a folder without config.json is an InputError naming the folder", async () => {
  await withTemp(async (dir) => {
    const e = await assertRejects(() => resolveModelDir(dir, envOf({})), InputError, "config.json");
    assertEquals(e.file, dir);
  });
});

Deno.test("resolveModelDir: a repo id resolves to the snapshot named by refs/main, not the newest", async () => {
  await withTemp(async (cache) => {
    await fakeRepo(cache, "models", "org/tiny-llm", ["aaa111", "bbb222"], "aaa111\n");
    await Deno.utime(`${cache}/models--org--tiny-llm/snapshots/bbb222`, new Date(), new Date()); // newer
    await Deno.utime(`${cache}/models--org--tiny-llm/snapshots/aaa111`, 1_000_000, 1_000_000);
    const got = await resolveModelDir("org/tiny-llm", envOf({ HF_HUB_CACHE: cache }));
    assertEquals(got, `${cache}/models--org--tiny-llm/snapshots/aaa111`);
  });
});

Deno.test("resolveModelDir: without refs/main, the only snapshot, else the most recently modified", async () => {
  await withTemp(async (cache) => {
    await fakeRepo(cache, "models", "solo", ["only1"]);
    assertEquals(
      await resolveModelDir("solo", envOf({ HF_HUB_CACHE: cache })),
      `${cache}/models--solo/snapshots/only1`,
    );

    await fakeRepo(cache, "models", "org/many", ["old", "new", "mid"]);
    const snap = `${cache}/models--org--many/snapshots`;
    await Deno.utime(`${snap}/old`, 1_000_000, 1_000_000);
    await Deno.utime(`${snap}/mid`, 2_000_000, 2_000_000);
    await Deno.utime(`${snap}/new`, 3_000_000, 3_000_000);
    assertEquals(await resolveModelDir("org/many", envOf({ HF_HUB_CACHE: cache })), `${snap}/new`);
  });
});

Deno.test("resolveModelDir: the cache is HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub", async () => {
  await withTemp(async (root) => {
    await fakeRepo(`${root}/hubcache`, "models", "org/m", ["r1"]);
    await fakeRepo(`${root}/hfhome/hub`, "models", "org/m", ["r2"]);
    await fakeRepo(`${root}/home/.cache/huggingface/hub`, "models", "org/m", ["r3"]);
    const all = { HF_HUB_CACHE: `${root}/hubcache`, HF_HOME: `${root}/hfhome`, HOME: `${root}/home` };
    assert((await resolveModelDir("org/m", envOf(all))).endsWith("/r1"));
    assert((await resolveModelDir("org/m", envOf({ ...all, HF_HUB_CACHE: "" }))).endsWith("/r2"));
    assert((await resolveModelDir("org/m", envOf({ HOME: `${root}/home` }))).endsWith("/r3"));
    assertEquals(hubCacheDir(envOf({ HF_HOME: "~/hf", HOME: "/h" })), "/h/hf/hub");
  });
});

Deno.test("resolveModelDir: a missing model is an InputError listing where it looked", async () => {
  await withTemp(async (cache) => {
    const e = await assertRejects(
      () => resolveModelDir("org/absent", envOf({ HF_HUB_CACHE: cache })),
      InputError,
      "model folder or Hugging Face cache entry not found: org/absent",
    );
    assert(e.message.includes(`${cache}/models--org--absent`), e.message);
    await assertRejects(
      () => resolveModelDir("./no/such/dir", envOf({ HF_HUB_CACHE: cache })),
      InputError,
      "not found",
    );
  });
});

Deno.test("resolveModelDir: refs/main naming a missing snapshot is an InputError, not a silent guess", async () => {
  await withTemp(async (cache) => {
    await fakeRepo(cache, "models", "org/broken", ["present"], "gone");
    await assertRejects(
      () => resolveModelDir("org/broken", envOf({ HF_HUB_CACHE: cache })),
      InputError,
      "gone",
    );
  });
});

Deno.test("resolveModelDir: a cached snapshot without config.json is an InputError naming it", async () => {
  await withTemp(async (cache) => {
    await Deno.mkdir(`${cache}/models--org--noconf/snapshots/r`, { recursive: true });
    const e = await assertRejects(
      () => resolveModelDir("org/noconf", envOf({ HF_HUB_CACHE: cache })),
      InputError,
    );
    assertEquals(e.file, `${cache}/models--org--noconf/snapshots/r`);
  });
});

Deno.test("resolveDatasetCacheDir: datasets--org--name snapshot when cached, undefined when absent", async () => {
  await withTemp(async (cache) => {
    await fakeRepo(cache, "datasets", "NeelNanda/pile-10k", ["abc"], "abc");
    const env = envOf({ HF_HUB_CACHE: cache });
    assertEquals(
      await resolveDatasetCacheDir("NeelNanda/pile-10k", env),
      `${cache}/datasets--NeelNanda--pile-10k/snapshots/abc`,
    );
    assertEquals(await resolveDatasetCacheDir("NeelNanda/other", env), undefined);
    assertEquals(await resolveDatasetCacheDir("../escape", env), undefined);
  });
});
