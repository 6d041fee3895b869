/**
 * The CUDA driver API symbols this program calls, typed once (`Deno.dlopen("libcuda.so.1")`).
 *
 * Handles (CUcontext, CUstream, CUevent, CUmodule, CUfunction, CUgraph, CUgraphExec) and device
 * addresses (CUdeviceptr) travel as `usize` (bigint); out-parameters are small typed arrays passed as
 * `buffer`. Names are the versioned exports that cuda.h's macros select (cuMemAlloc → cuMemAlloc_v2,
 * cuStreamBeginCapture → cuStreamBeginCapture_v2, cuGraphInstantiate → cuGraphInstantiateWithFlags).
 * Every function returns a CUresult (0 = CUDA_SUCCESS).
 */
export const DRIVER_SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["usize"], result: "i32" },
  cuCtxSynchronize: { parameters: [], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: ["usize"], result: "i32" },
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  cuMemcpyHtoDAsync_v2: { parameters: ["usize", "buffer", "usize", "usize"], result: "i32" },
  cuMemcpyDtoHAsync_v2: { parameters: ["buffer", "usize", "usize", "usize"], result: "i32" },
  cuMemcpyDtoDAsync_v2: { parameters: ["usize", "usize", "usize", "usize"], result: "i32" },
  cuMemsetD8Async: { parameters: ["usize", "u8", "usize", "usize"], result: "i32" },
  cuMemsetD16Async: { parameters: ["usize", "u16", "usize", "usize"], result: "i32" },
  cuMemsetD32Async: { parameters: ["usize", "u32", "usize", "usize"], result: "i32" },
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuStreamDestroy_v2: { parameters: ["usize"], result: "i32" },
  cuStreamSynchronize: { parameters: ["usize"], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventDestroy_v2: { parameters: ["usize"], result: "i32" },
  cuEventRecord: { parameters: ["usize", "usize"], result: "i32" },
  cuEventQuery: { parameters: ["usize"], result: "i32" },
  cuEventSynchronize: { parameters: ["usize"], result: "i32" },
  /** The same function on a worker thread: `await` it instead of blocking the event loop. */
  cuEventSynchronizeNonblocking: {
    name: "cuEventSynchronize",
    parameters: ["usize"],
    result: "i32",
    nonblocking: true,
  },
  cuEventElapsedTime: { parameters: ["buffer", "usize", "usize"], result: "i32", optional: true },
  cuEventElapsedTime_v2: { parameters: ["buffer", "usize", "usize"], result: "i32", optional: true },
  cuModuleLoadDataEx: { parameters: ["buffer", "buffer", "u32", "buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: ["usize"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "usize", "buffer"], result: "i32" },
  cuFuncSetAttribute: { parameters: ["usize", "i32", "i32"], result: "i32" },
  cuLaunchKernel: {
    parameters: ["usize", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "usize", "buffer", "usize"],
    result: "i32",
  },
  cuStreamBeginCapture_v2: { parameters: ["usize", "i32"], result: "i32" },
  cuStreamEndCapture: { parameters: ["usize", "buffer"], result: "i32" },
  cuGraphInstantiateWithFlags: { parameters: ["buffer", "usize", "u64"], result: "i32" },
  cuGraphLaunch: { parameters: ["usize", "usize"], result: "i32" },
  cuGraphExecDestroy: { parameters: ["usize"], result: "i32" },
  cuGraphDestroy: { parameters: ["usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened driver library. */
export type DriverLib = Deno.DynamicLibrary<typeof DRIVER_SYMBOLS>;

/** CUresult values the bindings react to (cuda.h § CUresult). */
export const CU = {
  SUCCESS: 0,
  ERROR_OUT_OF_MEMORY: 2,
  ERROR_NO_DEVICE: 100,
  ERROR_INVALID_CONTEXT: 201,
  ERROR_NOT_READY: 600,
} as const;

/** CUdevice_attribute values (cuda.h). */
export const CU_DEVICE_ATTRIBUTE = {
  MULTIPROCESSOR_COUNT: 16,
  L2_CACHE_SIZE: 38,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
  MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
} as const;

/** CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES. */
export const CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
/** CU_STREAM_NON_BLOCKING: the stream does not synchronize with the legacy NULL stream. */
export const CU_STREAM_NON_BLOCKING = 1;
/** CU_EVENT_DISABLE_TIMING. */
export const CU_EVENT_DISABLE_TIMING = 2;
/** CU_STREAM_CAPTURE_MODE_RELAXED: the capturing thread may still call cuMemAlloc. */
export const CU_STREAM_CAPTURE_MODE_RELAXED = 2;
/** CU_JIT_INFO_LOG_BUFFER(_SIZE_BYTES), CU_JIT_ERROR_LOG_BUFFER(_SIZE_BYTES). */
export const CU_JIT = {
  INFO_LOG_BUFFER: 3,
  INFO_LOG_BUFFER_SIZE_BYTES: 4,
  ERROR_LOG_BUFFER: 5,
  ERROR_LOG_BUFFER_SIZE_BYTES: 6,
} as const;
