// Standalone test of the NF4 / FP4 dequantisation kernels
// (worker/train/cuda/nf4_kernels.h) against a CPU reference written here
// from the code book constants, independently of the kernels and of
// worker/train/nf4.cc (no LibTorch, no gtest: it must build with nvcc
// alone, on machines without a CUDA LibTorch).
//
// Exit status: 0 all cases bit-identical, 1 a mismatch or CUDA error,
// 77 skipped (no usable CUDA device; the argument checks still ran).
// Prints one key=value line per figure (dequantised GB/s of a 4096 x 11008
// weight) for bench/gpu/run.sh.
#include <cuda_runtime.h>

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "worker/train/cuda/nf4_kernels.h"

namespace {

using ftune::train::gpu::CodeBookType;
using ftune::train::gpu::DequantizeNf4;
using ftune::train::gpu::Nf4DeviceWeight;
using ftune::train::gpu::Nf4StatusMessage;
using ftune::train::gpu::OutputType;

// QLoRA paper, Appendix E.
const float kNf4[16] = {-1.0f,
                        -0.6961928009986877f,
                        -0.5250730514526367f,
                        -0.39491748809814453f,
                        -0.28444138169288635f,
                        -0.18477343022823334f,
                        -0.09105003625154495f,
                        0.0f,
                        0.07958029955625534f,
                        0.16093020141124725f,
                        0.24611230194568634f,
                        0.33791524171829224f,
                        0.44070982933044434f,
                        0.5626170039176941f,
                        0.7229568362236023f,
                        1.0f};
// E2M1 magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6} / 6; bit 3 is the sign.
float Fp4Level(int code) {
  static const float kMag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  const float m = kMag[code & 7] / 6.0f;
  return (code & 8) ? -m : m;
}

int failures = 0;
#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      ++failures;                                                          \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                   \
      std::fprintf(stderr, "\n");                                          \
    }                                                                      \
  } while (0)

// Round-to-nearest-even float -> bf16 / fp16 bit patterns (finite inputs
// and infinities; NaN is never produced here).
uint16_t ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
uint16_t ToFp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00;
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // >= 65520: infinity
  if (ax <= 0x33000000u) return sign;           // <= 2^-25: zero
  const int e = static_cast<int>(ax >> 23);
  uint32_t h, rem, half;
  if (e < 113) {  // a subnormal half
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const int shift = 126 - e;
    h = m >> shift;
    rem = m & ((1u << shift) - 1);
    half = 1u << (shift - 1);
  } else {
    h = (static_cast<uint32_t>(e - 112) << 10) | ((ax & 0x7fffffu) >> 13);
    rem = ax & 0x1fffu;
    half = 0x1000u;
  }
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

// Known values of the conversions themselves.
void CheckConversions() {
  EXPECT(ToBf16(1.0f) == 0x3f80, "bf16(1)");
  EXPECT(ToBf16(1.00390625f) == 0x3f80, "bf16 tie to even down");
  EXPECT(ToBf16(1.01171875f) == 0x3f82, "bf16 tie to even up");
  EXPECT(ToFp16(1.0f) == 0x3c00, "fp16(1)");
  EXPECT(ToFp16(65504.0f) == 0x7bff, "fp16 max");
  EXPECT(ToFp16(65520.0f) == 0x7c00, "fp16 overflow");
  EXPECT(ToFp16(std::ldexp(1.0f, -24)) == 0x0001, "fp16 min subnormal");
  EXPECT(ToFp16(std::ldexp(1.0f, -25)) == 0x0000, "fp16 tie to zero");
  EXPECT(ToFp16(std::ldexp(3.0f, -26)) == 0x0001, "fp16 above tie");
  EXPECT(ToFp16(std::ldexp(1.0f, -14)) == 0x0400, "fp16 min normal");
  EXPECT(ToFp16(-2.0f) == 0xc000, "fp16(-2)");
}

struct Case {
  CodeBookType type;
  bool double_quant;
  int64_t numel, block_size, dq_block_size;
  int out_offset;  // elements: an offset output forces the byte kernel
};

struct HostWeight {
  std::vector<uint8_t> codes;
  std::vector<float> absmax;
  std::vector<int8_t> absmax_q;
  std::vector<float> absmax_scale;
  float offset = 0;
};

HostWeight MakeWeight(const Case& c, std::mt19937* rng) {
  const int64_t blocks = (c.numel + c.block_size - 1) / c.block_size;
  HostWeight h;
  h.codes.resize(static_cast<size_t>(blocks * c.block_size / 2));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : h.codes) b = static_cast<uint8_t>(byte(*rng));
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  if (!c.double_quant) {
    h.absmax.resize(blocks);
    for (auto& a : h.absmax) {
      // Some zero blocks, some large values (fp16 overflow), mostly ~0.05.
      const float r = u(*rng);
      a = r < 0.02f ? 0.0f : r < 0.04f ? 7.0e4f * u(*rng) : 0.1f * u(*rng);
    }
    return h;
  }
  const int64_t groups = (blocks + c.dq_block_size - 1) / c.dq_block_size;
  h.absmax_q.resize(blocks);
  std::uniform_int_distribution<int> q(-127, 127);
  for (auto& v : h.absmax_q) v = static_cast<int8_t>(q(*rng));
  h.absmax_scale.resize(groups);
  for (auto& s : h.absmax_scale) s = u(*rng) < 0.05f ? 0.0f : 1e-3f * u(*rng);
  h.offset = 0.01f + 0.1f * u(*rng);
  return h;
}

// The reference: level(code) * absmax in fp32, the double-quantised absmax
// as fp32 (q * s) + c with an explicit rounding after each operation.
std::vector<float> Reference(const Case& c, const HostWeight& h) {
  std::vector<float> out(c.numel);
  for (int64_t e = 0; e < c.numel; ++e) {
    const uint8_t byte = h.codes[e / 2];
    const int code = (e % 2 == 0) ? byte >> 4 : byte & 15;
    const float level =
        c.type == CodeBookType::kNf4 ? kNf4[code] : Fp4Level(code);
    const int64_t block = e / c.block_size;
    float absmax;
    if (c.double_quant) {
      volatile float prod = static_cast<float>(h.absmax_q[block]) *
                            h.absmax_scale[block / c.dq_block_size];
      absmax = prod + h.offset;
    } else {
      absmax = h.absmax[block];
    }
    volatile float v = level * absmax;
    out[e] = v;
  }
  return out;
}

template <typename T>
T* DeviceCopy(const std::vector<T>& v) {
  if (v.empty()) return nullptr;
  void* p = nullptr;
  if (cudaMalloc(&p, v.size() * sizeof(T)) != cudaSuccess) std::abort();
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(p);
}

const char* Name(OutputType t) {
  return t == OutputType::kFloat32   ? "fp32"
         : t == OutputType::kFloat16 ? "fp16"
                                     : "bf16";
}

void RunCase(const Case& c, cudaStream_t stream, std::mt19937* rng) {
  HostWeight h = MakeWeight(c, rng);
  std::vector<float> ref = Reference(c, h);
  Nf4DeviceWeight w;
  w.type = c.type;
  w.numel = c.numel;
  w.block_size = c.block_size;
  w.double_quant = c.double_quant;
  w.double_quant_block_size = c.dq_block_size;
  w.codes = DeviceCopy(h.codes);
  w.absmax = DeviceCopy(h.absmax);
  w.absmax_q = DeviceCopy(h.absmax_q);
  w.absmax_scale = DeviceCopy(h.absmax_scale);
  w.absmax_offset = h.offset;
  for (OutputType t :
       {OutputType::kFloat32, OutputType::kFloat16, OutputType::kBFloat16}) {
    const size_t es = t == OutputType::kFloat32 ? 4 : 2;
    const size_t n = static_cast<size_t>(c.numel) + c.out_offset;
    char* out = nullptr;
    cudaMalloc(&out, n * es + 16);
    cudaMemset(out, 0xff, n * es + 16);  // guard: must stay untouched
    int st = DequantizeNf4(w, t, out + c.out_offset * es, stream);
    EXPECT(st == 0, "launch: %s", Nf4StatusMessage(st));
    cudaError_t err = cudaStreamSynchronize(stream);
    EXPECT(err == cudaSuccess, "run: %s", cudaGetErrorString(err));
    std::vector<unsigned char> got(n * es + 16);
    cudaMemcpy(got.data(), out, got.size(), cudaMemcpyDeviceToHost);
    cudaFree(out);
    int64_t bad = 0;
    for (int64_t e = 0; e < c.numel; ++e) {
      const unsigned char* g = got.data() + (c.out_offset + e) * es;
      uint32_t gv = 0, rv = 0;
      std::memcpy(&gv, g, es);
      if (t == OutputType::kFloat32) {
        std::memcpy(&rv, &ref[e], 4);
      } else {
        rv = t == OutputType::kFloat16 ? ToFp16(ref[e]) : ToBf16(ref[e]);
      }
      if (gv != rv && bad++ < 3)
        std::fprintf(stderr,
                     "  element %" PRId64 ": got 0x%x want 0x%x (%.9g)\n", e,
                     gv, rv, ref[e]);
    }
    bool guard_ok = true;
    for (size_t i = 0; i < c.out_offset * es; ++i) guard_ok &= got[i] == 0xff;
    for (size_t i = n * es; i < got.size(); ++i) guard_ok &= got[i] == 0xff;
    EXPECT(bad == 0 && guard_ok,
           "%s dq=%d numel=%" PRId64 " block=%" PRId64 " dq_block=%" PRId64
           " offset=%d out=%s: %" PRId64 " mismatches, guard %s",
           c.type == CodeBookType::kNf4 ? "nf4" : "fp4", c.double_quant,
           c.numel, c.block_size, c.dq_block_size, c.out_offset, Name(t), bad,
           guard_ok ? "ok" : "overwritten");
  }
  cudaFree(const_cast<uint8_t*>(w.codes));
  cudaFree(const_cast<float*>(w.absmax));
  cudaFree(const_cast<int8_t*>(w.absmax_q));
  cudaFree(const_cast<float*>(w.absmax_scale));
}

// Argument errors come back before any CUDA call, so they run everywhere.
void CheckArguments() {
  Nf4DeviceWeight w;
  w.numel = 128;
  uint8_t dummy_codes[64];
  float dummy_absmax[2];
  void* out = dummy_absmax;  // never written: every call below fails early
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, out, nullptr) ==
             ftune::train::gpu::kNf4NullPointer,
         "null codes");
  w.codes = dummy_codes;
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, out, nullptr) ==
             ftune::train::gpu::kNf4NullPointer,
         "null absmax");
  w.absmax = dummy_absmax;
  w.block_size = 63;
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, out, nullptr) ==
             ftune::train::gpu::kNf4BadBlockSize,
         "odd block");
  w.block_size = 64;
  w.double_quant = true;
  w.double_quant_block_size = 0;
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, out, nullptr) ==
             ftune::train::gpu::kNf4BadDqBlockSize,
         "dq block 0");
  w.double_quant_block_size = 256;
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, out, nullptr) ==
             ftune::train::gpu::kNf4NullPointer,
         "null absmax_q");
  EXPECT(DequantizeNf4(w, static_cast<OutputType>(7), out, nullptr) ==
             ftune::train::gpu::kNf4BadType,
         "bad output type");
  w.numel = 0;
  EXPECT(DequantizeNf4(w, OutputType::kFloat32, nullptr, nullptr) == 0,
         "empty is a no-op");
  for (int s : {0, -1, -2, -3, -4, -5, -99})
    EXPECT(Nf4StatusMessage(s) != nullptr && *Nf4StatusMessage(s) != 0,
           "message %d", s);
}

// Throughput of one Llama-7B-sized MLP weight, bf16 out.
void Bench(cudaStream_t stream) {
  const int64_t numel = int64_t{4096} * 11008;
  Nf4DeviceWeight w;
  w.numel = numel;
  w.double_quant = true;
  std::vector<uint8_t> codes(numel / 2, 0x7f);
  std::vector<int8_t> q(numel / 64, 3);
  std::vector<float> s((numel / 64 + 255) / 256, 1e-3f);
  w.codes = DeviceCopy(codes);
  w.absmax_q = DeviceCopy(q);
  w.absmax_scale = DeviceCopy(s);
  void* out = nullptr;
  cudaMalloc(&out, numel * 2);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i)
    DequantizeNf4(w, OutputType::kBFloat16, out, stream);
  const int iters = 20;
  cudaEventRecord(a, stream);
  for (int i = 0; i < iters; ++i)
    DequantizeNf4(w, OutputType::kBFloat16, out, stream);
  cudaEventRecord(b, stream);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  const double secs = ms / 1e3 / iters;
  const double bytes = numel * (0.5 + 2.0) + numel / 64 + 4.0 * s.size();
  std::printf("nf4_dequant_bf16_us=%.1f\n", secs * 1e6);
  std::printf("nf4_dequant_bf16_gb_per_s=%.1f\n", bytes / secs / 1e9);
  cudaFree(out);
  cudaFree(const_cast<uint8_t*>(w.codes));
  cudaFree(const_cast<int8_t*>(w.absmax_q));
  cudaFree(const_cast<float*>(w.absmax_scale));
}

}  // namespace

int main() {
  CheckConversions();
  // FP4 as nf4.h describes it: 7 is 1, 15 is -1, 8 is -0.
  EXPECT(Fp4Level(7) == 1.0f && Fp4Level(15) == -1.0f, "fp4 ends");
  EXPECT(Fp4Level(8) == 0.0f && std::signbit(Fp4Level(8)), "fp4 -0");
  CheckArguments();
  if (failures > 0) {
    std::printf("nf4_kernels_test: FAILED (%d checks)\n", failures);
    return 1;
  }
  int devices = 0;
  cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess || devices == 0) {
    std::printf("nf4_kernels_test: skipped (no CUDA device: %s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
    return 77;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device=%s sm=%d%d\n", prop.name, prop.major, prop.minor);
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  std::mt19937 rng(1234);
  const Case cases[] = {
      // The trainer's default: block 64, double quant in groups of 256.
      {CodeBookType::kNf4, true, 4096 * 3, 64, 256, 0},
      {CodeBookType::kNf4, false, 4096 * 3, 64, 256, 0},
      {CodeBookType::kFp4, true, 4096 * 3, 64, 256, 0},
      {CodeBookType::kFp4, false, 4096 * 3, 64, 256, 0},
      // Padding in the last block; a partial last dq group.
      {CodeBookType::kNf4, true, 64 * 1000 + 5, 64, 256, 0},
      {CodeBookType::kFp4, false, 64 * 1000 + 5, 64, 256, 0},
      // Unaligned output: the byte kernel on an aligned-size weight.
      {CodeBookType::kNf4, true, 4096, 64, 256, 1},
      {CodeBookType::kNf4, false, 4096, 64, 256, 3},
      // Block sizes the word kernel cannot take, and odd dq groups.
      {CodeBookType::kNf4, true, 130, 2, 7, 0},
      {CodeBookType::kFp4, true, 999, 6, 3, 0},
      {CodeBookType::kNf4, false, 1001, 10, 256, 0},
      // Large blocks; a weight big enough for grid-stride loops.
      {CodeBookType::kNf4, true, 1 << 20, 4096, 256, 0},
      {CodeBookType::kFp4, true, 1 << 20, 32, 256, 0},
      {CodeBookType::kNf4, true, int64_t{1} << 25, 64, 256, 0},
      {CodeBookType::kNf4, false, int64_t{1} << 25, 64, 256, 1},
      {CodeBookType::kNf4, false, 1, 64, 256, 0},
  };
  int run = 0;
  for (const Case& c : cases) {
    const int before = failures;
    RunCase(c, stream, &rng);
    ++run;
    if (failures > before && failures > 20) break;
  }
  Bench(stream);
  cudaStreamDestroy(stream);
  if (failures > 0) {
    std::printf("nf4_kernels_test: FAILED (%d checks)\n", failures);
    return 1;
  }
  std::printf("nf4_kernels_test: %d cases x 3 output types passed\n", run);
  return 0;
}
