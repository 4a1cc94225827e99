#include "worker/train/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#define FTUNE_XENT_X86_64 1
#endif

namespace ftune::train {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

void PoisonRow(float* row, int64_t cols, bool grad, double* loss) {
  *loss = std::numeric_limits<double>::quiet_NaN();
  if (grad) std::fill(row, row + cols, kNaN);
}

// Scalar tail of a row, shared by both implementations: columns [c, cols).
float TailMax(const float* row, int64_t c, int64_t cols, float m, bool* nan) {
  for (; c < cols; ++c) {
    if (std::isnan(row[c])) *nan = true;
    m = std::max(m, row[c]);
  }
  return m;
}

double TailExpSum(float* row, int64_t c, int64_t cols, float m, bool grad) {
  double sum = 0;
  for (; c < cols; ++c) {
    const float e = std::exp(row[c] - m);
    sum += e;
    if (grad) row[c] = e;
  }
  return sum;
}

}  // namespace

namespace internal {

void SoftmaxCrossEntropyRowsScalar(float* x, int64_t rows, int64_t cols,
                                   int64_t ld, const int64_t* targets,
                                   bool grad, double* loss) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    bool nan = false;
    const float m = TailMax(row, 0, cols, kMinusInf, &nan);
    if (nan || !std::isfinite(m)) {
      PoisonRow(row, cols, grad, &loss[r]);
      continue;
    }
    const float picked = row[targets[r]];
    const double sum = TailExpSum(row, 0, cols, m, grad);
    loss[r] = m + std::log(sum) - picked;
    if (grad) {
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t c = 0; c < cols; ++c) row[c] *= inv;
      row[targets[r]] -= 1.0f;
    }
  }
}

#ifdef FTUNE_XENT_X86_64

namespace {

// exp(x) for x <= 0 (a logit minus its row's maximum), 8 lanes. Cody-Waite
// range reduction x = n ln2 + r with |r| <= ln2/2, then the Taylor polynomial
// of e^r to degree 7 (truncation error below 6e-9 relative), then scaling by
// 2^n through the exponent bits. Below ln(FLT_MIN) the result is 0.
__attribute__((target("avx2,fma"))) inline __m256 ExpNonPositive(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.33654f);  // ln(FLT_MIN)
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lowest);
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),  // log2(e)
                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 = 0.693359375 - 2.12194440e-4; the first part has few bits, so n times
  // it is exact.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i biased =
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, scale));
}

__attribute__((target("avx2,fma"))) inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

__attribute__((target("avx2,fma"))) inline double HorizontalSum(__m256 v) {
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  const __m256d s = _mm256_add_pd(lo, hi);
  __m128d t =
      _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  t = _mm_add_sd(t, _mm_unpackhi_pd(t, t));
  return _mm_cvtsd_f64(t);
}

// Columns summed in fp32 lanes before the partial sum moves to fp64.
constexpr int64_t kSumBlock = 512;

template <bool kGrad>
__attribute__((target("avx2,fma"))) void RowsAvx2(float* x, int64_t rows,
                                                  int64_t cols, int64_t ld,
                                                  const int64_t* targets,
                                                  double* loss) {
  const int64_t vec_end = cols - cols % 8;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    // Pass 1 (from memory): the maximum, and whether there is a NaN.
    __m256 vmax = _mm256_set1_ps(kMinusInf);
    __m256 vnan = _mm256_setzero_ps();
    for (int64_t c = 0; c < vec_end; c += 8) {
      const __m256 v = _mm256_loadu_ps(row + c);
      vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      vmax = _mm256_max_ps(vmax, v);
    }
    bool nan = _mm256_movemask_ps(vnan) != 0;
    const float m = TailMax(row, vec_end, cols, HorizontalMax(vmax), &nan);
    if (nan || !std::isfinite(m)) {
      PoisonRow(row, cols, kGrad, &loss[r]);
      continue;
    }
    const float picked = row[targets[r]];
    // Pass 2 (in cache): e = exp(x - m), their sum; e replaces x.
    const __m256 vm = _mm256_set1_ps(m);
    double sum = 0;
    for (int64_t c = 0; c < vec_end;) {
      const int64_t block_end = std::min(vec_end, c + kSumBlock);
      __m256 acc = _mm256_setzero_ps();
      for (; c < block_end; c += 8) {
        const __m256 e =
            ExpNonPositive(_mm256_sub_ps(_mm256_loadu_ps(row + c), vm));
        acc = _mm256_add_ps(acc, e);
        if constexpr (kGrad) _mm256_storeu_ps(row + c, e);
      }
      sum += HorizontalSum(acc);
    }
    sum += TailExpSum(row, vec_end, cols, m, kGrad);
    loss[r] = m + std::log(sum) - picked;
    if constexpr (kGrad) {
      // Pass 3 (in cache): softmax = e / sum, minus 1 at the target.
      const float inv_scalar = static_cast<float>(1.0 / sum);
      const __m256 inv = _mm256_set1_ps(inv_scalar);
      for (int64_t c = 0; c < vec_end; c += 8)
        _mm256_storeu_ps(row + c, _mm256_mul_ps(_mm256_loadu_ps(row + c), inv));
      for (int64_t c = vec_end; c < cols; ++c) row[c] *= inv_scalar;
      row[targets[r]] -= 1.0f;
    }
  }
}

bool CpuHasAvx2Fma() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

}  // namespace

bool SoftmaxCrossEntropyRowsAvx2(float* x, int64_t rows, int64_t cols,
                                 int64_t ld, const int64_t* targets, bool grad,
                                 double* loss) {
  if (!CpuHasAvx2Fma()) return false;
  if (grad)
    RowsAvx2<true>(x, rows, cols, ld, targets, loss);
  else
    RowsAvx2<false>(x, rows, cols, ld, targets, loss);
  return true;
}

#else  // !FTUNE_XENT_X86_64

bool SoftmaxCrossEntropyRowsAvx2(float*, int64_t, int64_t, int64_t,
                                 const int64_t*, bool, double*) {
  return false;
}

#endif

}  // namespace internal

void SoftmaxCrossEntropyRows(float* x, int64_t rows, int64_t cols, int64_t ld,
                             const int64_t* targets, bool grad, double* loss) {
  if (internal::SoftmaxCrossEntropyRowsAvx2(x, rows, cols, ld, targets, grad,
                                            loss))
    return;
  internal::SoftmaxCrossEntropyRowsScalar(x, rows, cols, ld, targets, grad,
                                          loss);
}

const char* SoftmaxCrossEntropyIsa() {
#ifdef FTUNE_XENT_X86_64
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return "avx2";
#endif
  return "scalar";
}

}  // namespace ftune::train
