// The fused softmax cross-entropy row kernel (worker/train/cross_entropy.h)
// against a float64 reference computed here, for both implementations (AVX2
// and scalar), on a hand-checked row, random rows of awkward widths, extreme
// values and non-finite input.
#include "worker/train/cross_entropy.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ftune::train {
namespace {

using Kernel = std::function<bool(float*, int64_t, int64_t, int64_t,
                                  const int64_t*, bool, double*)>;

struct Impl {
  std::string name;
  Kernel run;  // false: not available on this CPU
};

std::vector<Impl> Impls() {
  return {
      {"scalar",
       [](float* x, int64_t rows, int64_t cols, int64_t ld, const int64_t* t,
          bool grad, double* loss) {
         internal::SoftmaxCrossEntropyRowsScalar(x, rows, cols, ld, t, grad,
                                                 loss);
         return true;
       }},
      {"avx2", internal::SoftmaxCrossEntropyRowsAvx2},
      {"dispatch",
       [](float* x, int64_t rows, int64_t cols, int64_t ld, const int64_t* t,
          bool grad, double* loss) {
         SoftmaxCrossEntropyRows(x, rows, cols, ld, t, grad, loss);
         return true;
       }},
  };
}

// float64 reference for one row.
void Reference(const float* row, int64_t cols, int64_t target, double* loss,
               std::vector<double>* grad) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, double{row[c]});
  double sum = 0;
  for (int64_t c = 0; c < cols; ++c) sum += std::exp(double{row[c]} - m);
  *loss = m + std::log(sum) - row[target];
  grad->assign(cols, 0.0);
  for (int64_t c = 0; c < cols; ++c)
    (*grad)[c] = std::exp(double{row[c]} - m) / sum;
  (*grad)[target] -= 1.0;
}

TEST(SoftmaxCrossEntropyTest, ReportsAnImplementation) {
  const std::string isa = SoftmaxCrossEntropyIsa();
  EXPECT_TRUE(isa == "avx2" || isa == "scalar") << isa;
}

// x = (0, 0, ln 2, ln 4), target 2: softmax = (1, 1, 2, 4) / 8, so
// loss = ln 8 - ln 2 = ln 4 and the gradient is (1/8, 1/8, 1/4 - 1, 1/2).
// Eleven copies of the row side by side in one 44-wide row would hit the
// vector path too, so the check also runs with 9 columns (1 vector + tail).
TEST(SoftmaxCrossEntropyTest, HandCheckedRow) {
  for (const Impl& impl : Impls()) {
    SCOPED_TRACE(impl.name);
    std::vector<float> x = {0.0f, 0.0f, std::log(2.0f), std::log(4.0f)};
    const int64_t target = 2;
    double loss = 0;
    if (!impl.run(x.data(), 1, 4, 4, &target, true, &loss)) continue;
    EXPECT_NEAR(loss, std::log(4.0), 1e-6);
    EXPECT_NEAR(x[0], 0.125, 1e-7);
    EXPECT_NEAR(x[1], 0.125, 1e-7);
    EXPECT_NEAR(x[2], -0.75, 1e-7);
    EXPECT_NEAR(x[3], 0.5, 1e-7);

    // Nine columns: eight zeros and ln 8 (softmax 1/16 each and 1/2).
    std::vector<float> y(9, 0.0f);
    y[8] = std::log(8.0f);
    const int64_t t0 = 0;
    ASSERT_TRUE(impl.run(y.data(), 1, 9, 9, &t0, true, &loss));
    EXPECT_NEAR(loss, std::log(16.0), 1e-6);
    EXPECT_NEAR(y[0], 1.0 / 16 - 1.0, 1e-7);
    for (int c = 1; c < 8; ++c) EXPECT_NEAR(y[c], 1.0 / 16, 1e-7) << c;
    EXPECT_NEAR(y[8], 0.5, 1e-7);
  }
}

TEST(SoftmaxCrossEntropyTest, MatchesFloat64OnRandomRows) {
  std::mt19937 rng(11);
  for (const Impl& impl : Impls()) {
    for (int64_t cols : {1, 7, 8, 9, 31, 100, 513, 1000, 4099}) {
      SCOPED_TRACE(impl.name + " cols=" + std::to_string(cols));
      const int64_t rows = 5, ld = cols + 3;  // padding between rows
      std::normal_distribution<float> normal(0.0f, 4.0f);
      std::vector<float> x(rows * ld);
      for (float& v : x) v = normal(rng);
      const std::vector<float> original = x;
      std::vector<int64_t> targets(rows);
      for (auto& t : targets) t = static_cast<int64_t>(rng() % cols);
      std::vector<double> loss(rows);
      if (!impl.run(x.data(), rows, cols, ld, targets.data(), true,
                    loss.data()))
        break;
      double max_loss_err = 0, max_grad_err = 0;
      for (int64_t r = 0; r < rows; ++r) {
        double want_loss;
        std::vector<double> want_grad;
        Reference(original.data() + r * ld, cols, targets[r], &want_loss,
                  &want_grad);
        max_loss_err = std::max(max_loss_err, std::abs(loss[r] - want_loss));
        for (int64_t c = 0; c < cols; ++c)
          max_grad_err =
              std::max(max_grad_err, std::abs(x[r * ld + c] - want_grad[c]));
        // The padding between rows is not touched.
        for (int64_t c = cols; c < ld; ++c)
          EXPECT_EQ(x[r * ld + c], original[r * ld + c]);
      }
      // fp32 logits up to ~20 in magnitude: a few ulp of the terms.
      EXPECT_LT(max_loss_err, 1e-5);
      EXPECT_LT(max_grad_err, 1e-6);

      // Without the gradient the rows stay as they were and the loss is the
      // same.
      std::vector<float> z = original;
      std::vector<double> loss2(rows);
      ASSERT_TRUE(impl.run(z.data(), rows, cols, ld, targets.data(), false,
                           loss2.data()));
      EXPECT_EQ(z, original);
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(loss2[r], loss[r]);
    }
  }
}

// A spread far beyond exp's range: terms below ln(FLT_MIN) relative to the
// maximum are exactly 0, the rest still sum correctly; large equal logits do
// not overflow.
TEST(SoftmaxCrossEntropyTest, ExtremeLogits) {
  for (const Impl& impl : Impls()) {
    SCOPED_TRACE(impl.name);
    std::vector<float> x(40, -1000.0f);
    x[3] = 50.0f;
    x[17] = 50.0f;
    x[30] = 1e30f;  // a huge finite maximum
    x[31] = 1e30f;
    std::vector<float> row1(x.begin(), x.begin() + 20);  // max 50
    std::vector<float> row2(x.begin() + 20, x.end());    // max 1e30
    std::vector<float> both = row1;
    both.insert(both.end(), row2.begin(), row2.end());
    const int64_t targets[2] = {3, 0};
    double loss[2];
    if (!impl.run(both.data(), 2, 20, 20, targets, true, loss)) continue;
    EXPECT_NEAR(loss[0], std::log(2.0), 1e-6);
    EXPECT_NEAR(both[3], -0.5, 1e-7);
    EXPECT_NEAR(both[17], 0.5, 1e-7);
    EXPECT_EQ(both[0], 0.0f);  // exp(-1050) is exactly 0
    // Row 2: target has logit -1000 against two of 1e30.
    EXPECT_NEAR(loss[1], 1e30 + std::log(2.0) + 1000.0, 1e24);
    EXPECT_EQ(both[20 + 0], -1.0f);
    EXPECT_NEAR(both[20 + 10], 0.5, 1e-7);
    EXPECT_NEAR(both[20 + 11], 0.5, 1e-7);
  }
}

// NaN anywhere in a row, or an infinite maximum, makes that row's loss NaN
// (the trainer's divergence check) and only that row's.
TEST(SoftmaxCrossEntropyTest, NonFiniteRowsGiveNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const Impl& impl : Impls()) {
    SCOPED_TRACE(impl.name);
    const int64_t cols = 19;
    std::vector<float> x(4 * cols, 1.0f);
    x[0 * cols + 5] = nan;   // in the vector part
    x[1 * cols + 18] = nan;  // in the scalar tail
    x[2 * cols + 2] = inf;   // infinite maximum
    x[3 * cols + 4] = -inf;  // harmless: exp(-inf) = 0
    const int64_t targets[4] = {0, 0, 0, 0};
    double loss[4];
    if (!impl.run(x.data(), 4, cols, cols, targets, true, loss)) continue;
    EXPECT_TRUE(std::isnan(loss[0]));
    EXPECT_TRUE(std::isnan(loss[1]));
    EXPECT_TRUE(std::isnan(loss[2]));
    EXPECT_TRUE(std::isnan(x[0]) && std::isnan(x[cols]) &&
                std::isnan(x[2 * cols]));
    EXPECT_NEAR(loss[3], std::log(18.0), 1e-6);
    EXPECT_EQ(x[3 * cols + 4], 0.0f);
    EXPECT_NEAR(x[3 * cols + 0], 1.0 / 18 - 1.0, 1e-7);
  }
}

// The vectorised and scalar implementations agree closely on a wide row
// (the vocabulary-sized case the trainer runs).
TEST(SoftmaxCrossEntropyTest, Avx2AgreesWithScalar) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-30.0f, 10.0f);
  const int64_t rows = 3, cols = 32003;
  std::vector<float> a(rows * cols);
  for (float& v : a) v = uniform(rng);
  std::vector<float> b = a;
  const int64_t targets[3] = {0, 16000, 32002};
  double la[3], lb[3];
  if (!internal::SoftmaxCrossEntropyRowsAvx2(a.data(), rows, cols, cols,
                                             targets, true, la))
    GTEST_SKIP() << "no AVX2/FMA on this CPU";
  internal::SoftmaxCrossEntropyRowsScalar(b.data(), rows, cols, cols, targets,
                                          true, lb);
  for (int r = 0; r < rows; ++r) EXPECT_NEAR(la[r], lb[r], 1e-5) << r;
  double max_rel = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::abs(b[i]) < 1e-30f) continue;
    max_rel = std::max(max_rel, std::abs(double{a[i]} - b[i]) / std::abs(b[i]));
  }
  EXPECT_LT(max_rel, 1e-5);
}

}  // namespace
}  // namespace ftune::train
