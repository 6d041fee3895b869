/**
 * The YAML subset of src/std/yaml.ts: what a job file needs reads as YAML means it, and everything
 * outside the subset is refused with the line it is on (never misread).
 */
import { MAX_YAML_DEPTH, parseYaml, YamlError } from "../src/std/yaml.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

Deno.test("yaml: mappings, sequences, scalars, quotes, flow collections and comments", () => {
  const doc = [
    "---",
    "# a comment line",
    "scheme: W4A16   # trailing comment",
    "iters: 0",
    "lr: 5e-3",
    "neg: -1",
    "hex: 0x1F",
    "float: 1.5",
    "inf: -.inf",
    "on: true",
    "off: False",
    "nothing: ~",
    "empty:",
    "url: http://host:80/a#frag",
    "hash: 'a # b'",
    'dq: "tab\\there \\u00e9 \\"q\\" \\\\"',
    "sq: 'it''s'",
    "colon: gguf:q4_k_m",
    'layer_config: {"mlp.down_proj": {bits: 8}, self_attn.o_proj: {"bits": 8, sym: true}}',
    "list: [auto_round, 'gguf:q4_0', 3, [x, y], {}]",
    "jobs:",
    "- model: a",
    "  format:",
    "    - auto_round",
    "    - gguf:q4_0",
    "-   model: b   # more indentation after the dash",
    "    nested:",
    "      - - 1",
    "        - 2",
    "      -",
    "        k: v",
    "      -",
    '"quoted key": 1',
    "...",
  ].join("\n");
  assertEquals(parseYaml(doc), {
    scheme: "W4A16",
    iters: 0,
    lr: 0.005,
    neg: -1,
    hex: 31,
    float: 1.5,
    inf: -Infinity,
    on: true,
    off: false,
    nothing: null,
    empty: null,
    url: "http://host:80/a#frag",
    hash: "a # b",
    dq: 'tab\there é "q" \\',
    sq: "it's",
    colon: "gguf:q4_k_m",
    layer_config: { "mlp.down_proj": { bits: 8 }, "self_attn.o_proj": { bits: 8, sym: true } },
    list: ["auto_round", "gguf:q4_0", 3, ["x", "y"], {}],
    jobs: [
      { model: "a", format: ["auto_round", "gguf:q4_0"] },
      { model: "b", nested: [[1, 2], { k: "v" }, null] },
    ],
    "quoted key": 1,
  });
});

Deno.test("yaml: YAML 1.2 core schema — yes/no/on are strings, quoted numbers stay strings", () => {
  assertEquals(parseYaml("a: yes\nb: no\nc: '200'\nd: \"true\"\ne: 1.0.0\nf: .5"), {
    a: "yes",
    b: "no",
    c: "200",
    d: "true",
    e: "1.0.0",
    f: 0.5,
  });
});

Deno.test("yaml: an empty document is null; a top-level list or scalar is itself", () => {
  assertEquals(parseYaml(""), null);
  assertEquals(parseYaml("# only a comment\n\n"), null);
  assertEquals(parseYaml("- 1\n- two"), [1, "two"]);
  assertEquals(parseYaml("just text"), "just text");
});

Deno.test("yaml: what is outside the subset is refused with its line", () => {
  const cases: [string, number, string][] = [
    ["a: 1\nb: |\n  text", 2, "block scalars"],
    ["a: >-\n  text", 1, "block scalars"],
    ["a: &anchor 1\nb: *anchor", 1, "anchors and aliases"],
    ["a: !!str 1", 1, "tags"],
    ["? complex\n: key", 1, "complex keys"],
    ["a: 1\n---\nb: 2", 2, "several documents"],
    ["%YAML 1.2\n---\na: 1", 1, "directives"],
    ["a:\n\t- x", 2, "tabs"],
    ["a: one\n  two", 2, "multi-line values"],
    ["a: [1, 2", 1, "flow collections must be written on one line"],
    ["a: {b: 1", 1, 'missing "}"'],
    ["a: [1 2]x", 1, 'unexpected "x"'],
    ["a: 1\na: 2", 2, 'duplicate key "a"'],
    ["a: {b: 1, b: 2}", 1, 'duplicate key "b"'],
    ['a: "open', 1, "unterminated"],
    ["a: 'open", 1, "unterminated"],
    ['a: "\\q"', 1, "unknown escape"],
    ["a: 1\n- b", 2, 'expected "key: value"'],
    ["a:\n  b: 1\n c: 2", 3, "unexpected indentation"],
    ["a: `cmd`", 1, "cannot start with `"],
    ["- a\n  - b", 2, "unexpected indentation"],
  ];
  for (const [doc, line, words] of cases) {
    const e = assertThrows(() => parseYaml(doc), YamlError, words);
    assertEquals(e.line, line, `${JSON.stringify(doc)}: ${e.message}`);
    assert(e.message.startsWith(`line ${line}: `), e.message);
  }
});

Deno.test("yaml: deep nesting is refused, not a stack overflow", () => {
  const deep = "a: " + "[".repeat(10_000) + "]".repeat(10_000);
  assertThrows(() => parseYaml(deep), YamlError, `deeper than ${MAX_YAML_DEPTH}`);
  let block = "";
  for (let i = 0; i < 200; i++) block += " ".repeat(i) + "k:\n";
  assertThrows(() => parseYaml(block + " ".repeat(200) + "v"), YamlError, `deeper than ${MAX_YAML_DEPTH}`);
});

Deno.test("yaml: CRLF line ends and a byte-order mark read like plain text", () => {
  assertEquals(parseYaml("\uFEFFa: 1\r\nb: [x]\r\n"), { a: 1, b: ["x"] });
});
