// Fused softmax cross-entropy over rows of fp32 logits, for the CPU LM head
// (model.cc, ChunkedLmHeadLoss). Plain C++, no LibTorch: the caller hands it
// raw rows and parallelises over them.
//
// One row is one predicted token: `cols` logits x (the vocabulary) and the
// index t of the target token. For each row the kernel computes
//
//   loss = logsumexp(x) - x[t]
//
// and, when asked for the gradient, overwrites the row in place with
// d loss / d x = softmax(x) - onehot(t). It reads the row from memory once
// (the max) and then works in cache (exp and sum, then the scaling), instead of
// the four to six passes over the whole chunk that separate tensor ops make.
// exp is a vectorised polynomial (AVX2 + FMA, chosen at run time; a scalar
// std::exp loop elsewhere), within a few ulp of std::exp.
//
// A row holding NaN or +/-Inf where the maximum is not finite yields a NaN
// loss (and NaN gradients), so that the trainer's divergence check sees it.
#ifndef FTUNE_WORKER_TRAIN_CROSS_ENTROPY_H_
#define FTUNE_WORKER_TRAIN_CROSS_ENTROPY_H_

#include <cstdint>

namespace ftune::train {

// Rows [0, rows) of the row-major matrix x (row r starts at x + r * ld,
// ld >= cols); targets[r] in [0, cols). loss[r] receives the row's loss.
// With grad, each row is replaced by softmax - onehot.
void SoftmaxCrossEntropyRows(float* x, int64_t rows, int64_t cols, int64_t ld,
                             const int64_t* targets, bool grad, double* loss);

// The implementation in use on this CPU: "avx2" or "scalar".
const char* SoftmaxCrossEntropyIsa();

namespace internal {
// The scalar implementation, always available (tests compare the two).
void SoftmaxCrossEntropyRowsScalar(float* x, int64_t rows, int64_t cols,
                                   int64_t ld, const int64_t* targets,
                                   bool grad, double* loss);
// The vectorised one; false if this CPU lacks AVX2/FMA (nothing done).
bool SoftmaxCrossEntropyRowsAvx2(float* x, int64_t rows, int64_t cols,
                                 int64_t ld, const int64_t* targets, bool grad,
                                 double* loss);
}  // namespace internal

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_CROSS_ENTROPY_H_
