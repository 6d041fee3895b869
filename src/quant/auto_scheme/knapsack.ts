/**
 * The exact multiple-choice knapsack of AutoScheme (spec/AUTOSCHEME.md § 4.5; auto-round
 * delta_loss.py:1291-1371 `choose_bits_per_layer_with_path`, called with max_states=None): pick one
 * choice per item minimizing Σ loss subject to Σ bits ≤ budget, over integer bit costs, with Pareto
 * pruning after every item. Tie-breaking is the reference's: at equal cost the first-generated state
 * wins (states are visited by ascending cost, choices in list order, replacement only on strictly
 * lower loss); across costs a state survives only if its loss is strictly below every cheaper
 * survivor's, so equal loss keeps the cheaper state.
 */

/** One candidate of an item: the option index, its bit cost and its loss. */
export interface KnapsackChoice {
  option: number;
  bits: number;
  loss: number;
}

/** The result: Σ loss, Σ bits and, per item, the option index chosen. */
export interface KnapsackResult {
  loss: number;
  bits: number;
  options: number[];
}

interface PathNode {
  parent: PathNode | null;
  option: number;
}

/**
 * Solve the knapsack; undefined when no assignment fits (the reference returns (None, None) and its
 * caller raises "Avg bits is too small").
 *
 * @example
 * ```ts
 * knapsack([[{ option: 0, bits: 2, loss: 4 }, { option: 1, bits: 4, loss: 1 }],
 *           [{ option: 0, bits: 2, loss: 3 }, { option: 1, bits: 4, loss: 0.5 }]], 6);
 * // { loss: 4, bits: 6, options: [1, 0] }
 * ```
 */
export function knapsack(
  items: readonly (readonly KnapsackChoice[])[],
  budget: number,
): KnapsackResult | undefined {
  // Parallel arrays, ascending cost (the pruned dict is rebuilt in ascending order each step).
  let costs: number[] = [0];
  let losses: number[] = [0];
  let nodes: (PathNode | null)[] = [null];
  for (const choices of items) {
    const next = new Map<number, { loss: number; node: PathNode }>();
    for (let s = 0; s < costs.length; s++) {
      const c = costs[s];
      for (const ch of choices) {
        const total = c + ch.bits;
        if (total > budget) continue;
        const loss = losses[s] + ch.loss;
        const prev = next.get(total);
        if (prev === undefined || loss < prev.loss) {
          next.set(total, { loss, node: { parent: nodes[s], option: ch.option } });
        }
      }
    }
    if (next.size === 0) return undefined;
    const sorted = [...next.keys()].sort((a, b) => a - b);
    costs = [];
    losses = [];
    nodes = [];
    let best = Infinity;
    for (const c of sorted) {
      const st = next.get(c)!;
      if (st.loss < best) {
        costs.push(c);
        losses.push(st.loss);
        nodes.push(st.node);
        best = st.loss;
      }
    }
  }
  if (costs.length === 0) return undefined; // only NaN losses survived nothing (Python: min() of empty)
  // min(dp, key=loss): the first minimum in ascending-cost order.
  let bestIdx = 0;
  for (let s = 1; s < costs.length; s++) if (losses[s] < losses[bestIdx]) bestIdx = s;
  const options: number[] = [];
  for (let n = nodes[bestIdx]; n !== null; n = n.parent) options.push(n.option);
  options.reverse();
  return { loss: losses[bestIdx], bits: costs[bestIdx], options };
}
