import { assert, assertEquals, assertRejects, withTempDir } from "./assert.ts";
import { InputError } from "../src/errors.ts";
import { OutputFolder } from "../src/io/output_folder.ts";

const withTemp = <T>(fn: (dir: string) => Promise<T>) => withTempDir("autoround-of-test-", fn);

const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("OutputFolder: writes go to a sibling temp folder; commit moves it into place, nothing else left", async () => {
  await withTemp(async (root) => {
    const final = `${root}/out/model`;
    const out = await OutputFolder.create(final);
    assertEquals(out.path, `${final}.partial`);
    await Deno.writeTextFile(`${out.path}/config.json`, "{}");
    assertEquals(list(`${root}/out`), ["model.partial"], "final folder absent before commit");
    await out.commit();
    assertEquals(list(`${root}/out`), ["model"]);
    assertEquals(await Deno.readTextFile(`${final}/config.json`), "{}");
    await out[Symbol.asyncDispose](); // disposing after commit keeps the output
    assertEquals(list(final), ["config.json"]);
  });
});

Deno.test("OutputFolder: abort removes the temp folder and never creates the final one", async () => {
  await withTemp(async (root) => {
    const out = await OutputFolder.create(`${root}/model`);
    await Deno.mkdir(`${out.path}/sub`);
    await Deno.writeTextFile(`${out.path}/sub/x`, "x");
    await out.abort();
    assertEquals(list(root), []);
    await out.abort(); // idempotent
  });
});

Deno.test("OutputFolder: commit replaces an existing folder completely and leaves no .old folder", async () => {
  await withTemp(async (root) => {
    const final = `${root}/model`;
    await Deno.mkdir(final);
    await Deno.writeTextFile(`${final}/stale.safetensors`, "old");
    await Deno.writeTextFile(`${final}/config.json`, "old");
    const out = await OutputFolder.create(final);
    await Deno.writeTextFile(`${out.path}/config.json`, "new");
    assertEquals(await Deno.readTextFile(`${final}/config.json`), "old", "old output intact until commit");
    await out.commit();
    assertEquals(list(root), ["model"]);
    assertEquals(list(final), ["config.json"]);
    assertEquals(await Deno.readTextFile(`${final}/config.json`), "new");
  });
});

Deno.test("OutputFolder: a parent under a regular file is an InputError before any work, creating nothing", async () => {
  await withTemp(async (root) => {
    await Deno.writeTextFile(`${root}/file`, "not a folder");
    const final = `${root}/file/sub/out`;
    const e = await assertRejects(
      () => OutputFolder.create(final),
      InputError,
      "cannot write output folder: ",
    );
    assertEquals(e.file, final);
    assertEquals(list(root), ["file"]);
    // A final path that is itself a regular file cannot be replaced by a folder either.
    await assertRejects(() => OutputFolder.create(`${root}/file`), InputError, "not a folder");
    assertEquals(list(root), ["file"]);
  });
});

Deno.test("OutputFolder: await using without commit leaves nothing behind when the work throws", async () => {
  await withTemp(async (root) => {
    const final = `${root}/model`;
    let temp = "";
    await assertRejects(
      async () => {
        await using out = await OutputFolder.create(final);
        temp = out.path;
        await Deno.writeTextFile(`${out.path}/model.safetensors`, "partial");
        throw new Error("quantization failed half way");
      },
      Error,
      "half way",
    );
    assert(temp !== "");
    assertEquals(list(root), []);
  });
});

Deno.test("OutputFolder: a relative final path is made absolute next to the working folder", async () => {
  await withTemp(async (root) => {
    const up = "../".repeat(Deno.cwd().split("/").filter((s) => s).length);
    const out = await OutputFolder.create(`${up}${root.slice(1)}/./a/../model`);
    assertEquals(out.finalDir, `${root}/model`);
    await out.commit();
    assertEquals(list(root), ["model"]);
  });
});

Deno.test("OutputFolder: a second writer of the same output fails at once while the first holds the lock", async () => {
  await withTemp(async (root) => {
    const final = `${root}/model`;
    const first = await OutputFolder.create(final);
    await Deno.writeTextFile(`${first.path}/a`, "first");
    await assertRejects(() => OutputFolder.create(final), InputError, "another autoround run is writing it");
    assertEquals(await Deno.readTextFile(`${first.path}/a`), "first", "the first run's files untouched");
    await first.commit();
    assertEquals(list(final), ["a"], "the lock file does not end up in the output");
    // Once the first run is done, the output can be written again.
    const second = await OutputFolder.create(final);
    await second.commit();
    assertEquals(list(final), []);
  });
});

Deno.test("OutputFolder: a dead run's folder is cleared, or adopted with its journal when resuming", async () => {
  await withTemp(async (root) => {
    const final = `${root}/model`;
    // A run killed outright leaves its unlocked temporary folder behind.
    await Deno.mkdir(`${final}.partial/.journal`, { recursive: true });
    await Deno.writeTextFile(`${final}.partial/.journal/block-0`, "j");
    await Deno.writeTextFile(`${final}.partial/model.safetensors`, "half");
    const resumed = await OutputFolder.create(final, { resume: true, keep: [".journal"] });
    assert(resumed.adopted && !resumed.discardedStale);
    assertEquals(list(resumed.path), [".journal", ".lock"], "half-written outputs cleared, journal kept");
    await resumed.abort();
    await Deno.mkdir(`${final}.partial/.journal`, { recursive: true });
    const fresh = await OutputFolder.create(final, { keep: [".journal"] });
    assert(!fresh.adopted && fresh.discardedStale);
    assertEquals(list(fresh.path), [".lock"], "without resume nothing of the dead run survives");
    await fresh.abort();
    assertEquals(list(root), []);
  });
});

Deno.test("OutputFolder.abortAllOpen: removes every open folder (what a signal handler does), spares committed ones", async () => {
  await withTemp(async (root) => {
    const done = await OutputFolder.create(`${root}/done`);
    await Deno.writeTextFile(`${done.path}/config.json`, "{}");
    await done.commit();
    const a = await OutputFolder.create(`${root}/a`);
    const b = await OutputFolder.create(`${root}/b`);
    await Deno.mkdir(`${a.path}/auto_round`);
    await Deno.writeTextFile(`${a.path}/auto_round/model.safetensors`, "half");
    const dropped = OutputFolder.abortAllOpen().map((d) => [d.finalDir, d.error]);
    assertEquals(dropped.sort(), [[`${root}/a`, undefined], [`${root}/b`, undefined]]);
    assertEquals(list(root), ["done"]);
    assertEquals(OutputFolder.abortAllOpen(), [], "nothing is open any more");
    await a.abort(); // disposal after the handler is a no-op
    await assertRejects(() => b.commit(), Error, "after aborted");
    // The locks went with the folders: the outputs can be written again at once.
    const again = await OutputFolder.create(`${root}/a`);
    await again.commit();
    assertEquals(list(root), ["a", "done"]);
  });
});

Deno.test("OutputFolder.abortAllOpen: file operations still running on I/O threads cannot leave the folder behind", async () => {
  // What an exporter may have in flight when SIGINT arrives: shard files being created, a recursive
  // mkdir of its format folder. These run on Deno's I/O threads while the handler removes the folder.
  await withTemp(async (root) => {
    for (let round = 0; round < 20; round++) {
      const out = await OutputFolder.create(`${root}/out`);
      await Deno.mkdir(`${out.path}/fmt`);
      for (let i = 0; i < 200; i++) await Deno.writeTextFile(`${out.path}/fmt/old-${i}`, "x");
      const late: Promise<unknown>[] = [];
      for (let i = 0; i < 64; i++) {
        late.push(Deno.writeTextFile(`${out.path}/fmt/new-${i}`, "y"));
        if (i % 8 === 0) late.push(Deno.mkdir(`${out.path}/gguf-${i}`, { recursive: true }));
      }
      const dropped = OutputFolder.abortAllOpen();
      await Promise.allSettled(late);
      assertEquals(dropped.map((d) => d.error?.message), [undefined], `round ${round}`);
      // Anything a late mkdir made after the handler is not the handler's doing; what the handler
      // saw must be gone, and the trash folder with it.
      const left = list(root).filter((n) => n !== "out.partial");
      assertEquals(left, [], `round ${round}: left behind ${left}`);
      await Deno.remove(`${root}/out.partial`, { recursive: true }).catch(() => {});
    }
  });
});
