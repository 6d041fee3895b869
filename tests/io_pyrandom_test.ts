/**
 * PyRandom against CPython: values printed by CPython 3.11.7's `random` module on the dev machine
 * (the commands are below), so calibration samples are shuffled exactly as AutoRound shuffles them.
 */
import { PyRandom } from "../src/io/pyrandom.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

// Goldens: CPython 3.11.7 on the dev machine, e.g.
//   r = random.Random(42); x = list(range(1000)); r.shuffle(x)  -> x[:20], x[-5:], sum(i*v)
//   random.Random(42).random() x5; random.Random(0).getrandbits(k) for k in [1,5,31,32,33,53,64,100]
//   random.Random(2**40 + 12345).random() x3; random.Random(2**70 + 3).getrandbits(32) x3
//   random.Random(1)._randbelow(n) for n in [1,2,3,10,1000,2**31+1,2**40]

Deno.test("PyRandom.shuffle equals CPython's random.Random(42).shuffle(list(range(1000)))", () => {
  const x = Array.from({ length: 1000 }, (_, i) => i);
  new PyRandom(42).shuffle(x);
  assertEquals(
    x.slice(0, 20),
    [776, 507, 895, 922, 33, 483, 85, 750, 354, 523, 184, 809, 418, 615, 682, 501, 760, 49, 732, 336],
  );
  assertEquals(x.slice(-5), [281, 759, 25, 114, 654]);
  assertEquals(x.reduce((s, v, i) => s + i * v, 0), 250181598);
  assertEquals(new PyRandom(42).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
});

Deno.test("PyRandom.random (53-bit) equals CPython for seeds 42, 0, 5, -5 (abs), 2**32 and 2**40+12345", () => {
  const draw = (seed: number | bigint, n: number) => {
    const r = new PyRandom(seed);
    return Array.from({ length: n }, () => r.random());
  };
  assertEquals(draw(42, 5), [
    0.6394267984578837,
    0.025010755222666936,
    0.27502931836911926,
    0.22321073814882275,
    0.7364712141640124,
  ]);
  assertEquals(draw(0, 3), [0.8444218515250481, 0.7579544029403025, 0.420571580830845]);
  assertEquals(draw(5, 2), [0.6229016948897019, 0.7417869892607294]);
  assertEquals(draw(-5, 2), [0.6229016948897019, 0.7417869892607294]);
  assertEquals(draw(2 ** 32, 2), [0.11299430095636409, 0.41782886486292836]);
  assertEquals(draw(2 ** 40 + 12345, 3), [0.31036222241287226, 0.1148930862836336, 0.5335990945925775]);
});

Deno.test("PyRandom.getrandbits(k) equals CPython for k from 1 to 100 and a seed above 2**64", () => {
  const r = new PyRandom(0);
  const got = [1, 5, 31, 32, 33, 53, 64, 100].map((k) => r.getrandbits(k).toString());
  assertEquals(got, [
    "1",
    "12",
    "1627694678",
    "3823568514",
    "1806341205",
    "8696133065399866",
    "8963783824838420066",
    "1092065034664182788646272353144",
  ]);
  const big = new PyRandom(2n ** 70n + 3n);
  assertEquals([0, 1, 2].map(() => Number(big.getrandbits(32))), [701776502, 1422058157, 4284124921]);
});

Deno.test("PyRandom.randbelow equals CPython's _randbelow, also above 2**32", () => {
  const r = new PyRandom(1);
  assertEquals(
    [1, 2, 3, 10, 1000, 2 ** 31 + 1, 2 ** 40].map((n) => r.randbelow(n)),
    [0, 0, 1, 1, 507, 1930549411, 207060179245],
  );
});

Deno.test("PyRandom.getState/setState continue the sequence exactly (the resume journal's generator state)", () => {
  const a = new PyRandom(42);
  const xs = Array.from({ length: 10 }, (_, i) => i);
  a.shuffle(xs);
  for (let i = 0; i < 700; i++) a.random(); // past one 624-word refill
  const saved = a.getState();
  const next = [a.random(), a.random(), a.randbelow(1000)];
  const b = new PyRandom(7);
  b.setState(saved);
  assertEquals([b.random(), b.random(), b.randbelow(1000)], next);
  assert(next[0] !== new PyRandom(7).random(), "the state is really replaced");
  assertThrows(() => b.setState({ mt: new Uint32Array(3), index: 0 }), RangeError, "not an MT19937 state");
});
