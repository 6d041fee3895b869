// memory.wgsl — fill, copy with dtype conversion, the keepBest compare-and-copy, embedding rows.
//
// Layout: flat element ranges; `*_base` uniforms are element offsets inside the bound windows.
// Tiling: one thread per element, 256 per workgroup, workgroups spread over x and y (group_index).
// keepBest runs as keep_best_flag (flag ← loss < best), copy_if for each pair (copies only when the
// flag is set), keep_best_commit (best ← loss): all on the device, so the tuning loop never waits.
// Error bound: exact (copies and conversions round to nearest even like the CPU's typed arrays).

struct FillParams { n: u32, base: u32, value: f32, bits: u32 }
@group(0) @binding(0) var<uniform> pf: FillParams;
@group(0) @binding(1) var<storage, read_write> fill_out: array<out_t>;
@group(0) @binding(1) var<storage, read_write> fill_words: array<u32>;

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pf.n) { fill_out[pf.base + i] = out_cv(pf.value); }
}

// Integer fill by bit pattern (i32 and u8-as-u32 tensors).
@compute @workgroup_size(WG)
fn fill_bits(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pf.n) { fill_words[pf.base + i] = pf.bits; }
}

struct CopyParams { n: u32, src_base: u32, dst_base: u32, pad: u32 }
@group(0) @binding(0) var<uniform> pc: CopyParams;
@group(0) @binding(1) var<storage, read_write> copy_src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> copy_dst: array<dst_t>;
@group(0) @binding(3) var<storage, read_write> copy_flag: array<u32>;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pc.n) { copy_dst[pc.dst_base + i] = dst_cv(f32(copy_src[pc.src_base + i])); }
}

// Same-kind integer copy, bit for bit (no detour through f32, which would round above 2^24).
@compute @workgroup_size(WG)
fn copy_int(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pc.n) { copy_dst[pc.dst_base + i] = dst_t(copy_src[pc.src_base + i]); }
}

@compute @workgroup_size(WG)
fn copy_if(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i < pc.n && copy_flag[0] != 0u) { copy_dst[pc.dst_base + i] = dst_cv(f32(copy_src[pc.src_base + i])); }
}

struct BestParams { loss_base: u32, best_base: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> pk: BestParams;
@group(0) @binding(1) var<storage, read_write> kb_loss: array<loss_t>;
@group(0) @binding(2) var<storage, read_write> kb_best: array<best_t>;
@group(0) @binding(3) var<storage, read_write> kb_flag: array<u32>;

@compute @workgroup_size(1)
fn keep_best_flag() {
  // NaN losses compare false, as on the CPU.
  kb_flag[0] = select(0u, 1u, f32(kb_loss[pk.loss_base]) < f32(kb_best[pk.best_base]));
}

@compute @workgroup_size(1)
fn keep_best_commit() {
  if (kb_flag[0] != 0u) { kb_best[pk.best_base] = best_cv(f32(kb_loss[pk.loss_base])); }
}

struct EmbedParams { n: u32, cols: u32, row0: u32, rows: u32, vocab: u32, table_base: u32, ids_base: u32, out_base: u32 }
@group(0) @binding(0) var<uniform> pe: EmbedParams;
@group(0) @binding(1) var<storage, read> emb_table: array<table_t>;
@group(0) @binding(2) var<storage, read> emb_ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> emb_out: array<out_t>;

// Rows of the table window [row0, row0 + rows) for every id that falls in it; ids outside the
// vocabulary give NaN rows (written by the first window).
@compute @workgroup_size(WG)
fn embedding(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = group_index(wid, nwg) * WG + lid;
  if (i >= pe.n * pe.cols) { return; }
  let r = i / pe.cols;
  let c = i % pe.cols;
  let id = emb_ids[pe.ids_base + r];
  if (id < 0 || u32(id) >= pe.vocab) {
    // vocab = 0xffffffff marks one segment of a split source: ids it does not hold stay untouched.
    if (pe.row0 == 0u && pe.vocab != 0xffffffffu) { emb_out[pe.out_base + i] = out_cv(bitcast<f32>(0x7fc00000u)); }
    return;
  }
  let u = u32(id);
  if (u >= pe.row0 && u < pe.row0 + pe.rows) {
    emb_out[pe.out_base + i] = out_cv(f32(emb_table[pe.table_base + (u - pe.row0) * pe.cols + c]));
  }
}
