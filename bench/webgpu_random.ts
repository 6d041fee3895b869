/**
 * Random inputs for the WebGPU benchmarks that cost no upload: x = hash(i ^ seed)/2^32 − 0.5 written
 * on the GPU by a small kernel, and the same value recomputed on the host (rounded as the tensor's
 * storage rounds) for checking products against float64 references.
 */
import { type GpuRuntime, grid } from "../src/backend/webgpu/runtime.ts";
import type { GpuTensor } from "../src/backend/webgpu/tensor.ts";

function hash(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}
const FILL_WGSL = (t: string) =>
  `${t === "f16" ? "enable f16;" : ""}
struct P { n: u32, seed: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<${t}>;
fn hash(v: u32) -> u32 {
  var h = v;
  h ^= h >> 16u; h *= 0x7feb352du; h ^= h >> 15u; h *= 0x846ca68bu; h ^= h >> 16u;
  return h;
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) w: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) l: u32) {
  let i = (w.y * nw.x + w.x) * 256u + l;
  if (i >= p.n) { return; }
  x[p.base + i] = ${t}(f32(hash(i ^ p.seed)) * 2.3283064365386963e-10 - 0.5);
}`;
const fillPipes = new Map<string, GPUComputePipeline>();
export function randomFill(rt: GpuRuntime, t: GpuTensor, seed: number): void {
  const ty = t.kind.wgsl;
  let pipe = fillPipes.get(ty);
  if (!pipe) {
    const module = rt.device.createShaderModule({ code: FILL_WGSL(ty) });
    pipe = rt.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    fillPipes.set(ty, pipe);
  }
  rt.flush();
  const u = rt.device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const byteOff = t.offset * t.kind.bytes;
  const off = Math.floor(byteOff / rt.offsetAlign) * rt.offsetAlign;
  rt.device.queue.writeBuffer(u, 0, new Uint32Array([t.size, seed, (byteOff - off) / t.kind.bytes, 0]));
  const bg = rt.device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: u } },
      {
        binding: 1,
        resource: {
          buffer: t.storage.buffer,
          offset: off,
          size: Math.ceil((byteOff - off + t.size * t.kind.bytes) / 4) * 4,
        },
      },
    ],
  });
  const enc = rt.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipe);
  pass.setBindGroup(0, bg);
  pass.dispatchWorkgroups(...grid(Math.ceil(t.size / 256)));
  pass.end();
  rt.device.queue.submit([enc.finish()]);
}
/** Host value of element i of a tensor filled with `seed` (rounded as its storage rounds). */
export function hostValue(i: number, seed: number, dtype: string): number {
  const v = Math.fround(Math.fround(hash((i ^ seed) >>> 0)) * 2.3283064365386963e-10 - 0.5);
  return dtype === "f16" ? Math.f16round(v) : v;
}
