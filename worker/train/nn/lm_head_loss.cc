#include "worker/train/nn/lm_head_loss.h"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "worker/train/cross_entropy.h"

namespace ftune::train {
namespace {

using torch::Tensor;

// Mean cross-entropy of logits = softcap(h @ w^T) against targets, chunk by
// chunk.
// The gradient w.r.t. h is computed during the forward pass, chunk by chunk,
// so neither the logits nor their gradient exist for all rows at once;
// backward only scales it. When `w` requires grad (full fine-tuning), its
// gradient softmax-minus-onehot^T @ h is accumulated the same way, in fp32
// (fp64 for fp64), and cast to w's dtype in backward.
//
// On CPU (fp32 logits, also for bf16 activations, upcast), one logits buffer
// serves every chunk and the fused row kernel of cross_entropy.h turns it into
// the loss and softmax - onehot with one pass over memory; elsewhere (CUDA,
// fp64) the same is done with tensor ops.
class ChunkedLmHeadLoss : public torch::autograd::Function<ChunkedLmHeadLoss> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor h,
                        Tensor w, Tensor targets, int64_t chunk, double softcap,
                        bool need_grad) {
    const int64_t n = h.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat64 &&
                        h.scalar_type() != torch::kFloat32;
    Tensor grad_h = need_grad ? torch::empty_like(h) : Tensor();
    const bool w_grad = need_grad && w.requires_grad();
    Tensor grad_w =
        w_grad ? torch::zeros_like(
                     w, w.options().dtype(h.scalar_type() == torch::kFloat64
                                              ? torch::kFloat64
                                              : torch::kFloat32))
               : Tensor();
    const double total =
        h.device().is_cpu() && h.scalar_type() != torch::kFloat64
            ? FusedCpu(h, w, targets, chunk, softcap, grad_h, grad_w)
            : WithTensorOps(h, w, targets, chunk, softcap, grad_h, grad_w);
    ctx->saved_data["n"] = n;
    ctx->saved_data["w_grad"] = w_grad;
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    if (w_grad) {
      ctx->save_for_backward({grad_h, grad_w});
    } else if (need_grad) {
      ctx->save_for_backward({grad_h});
    }
    // The loss itself is fp32 for half-precision activations.
    return torch::tensor(
        total / static_cast<double>(n),
        h.options().dtype(upcast ? torch::kFloat32 : h.scalar_type()));
  }

  // Sum of the rows' losses; fills grad_h (if defined) with softmax - onehot
  // times w, row by row.
  static double FusedCpu(const Tensor& h, const Tensor& w,
                         const Tensor& targets, int64_t chunk, double softcap,
                         const Tensor& grad_h, const Tensor& grad_w) {
    const int64_t n = h.size(0);
    const int64_t vocab = w.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat32;
    Tensor tgt = targets.to(torch::kLong).contiguous();
    TORCH_CHECK(
        tgt.min().item<int64_t>() >= 0 && tgt.max().item<int64_t>() < vocab,
        "target token id outside the vocabulary (", vocab, ")");
    const int64_t* tgt_data = tgt.data_ptr<int64_t>();
    const int64_t rows_max = std::min(chunk, n);
    Tensor buf = torch::empty({rows_max, vocab}, h.options());
    Tensor buf32 = upcast ? torch::empty({rows_max, vocab},
                                         h.options().dtype(torch::kFloat32))
                          : buf;
    // With a soft-cap: tanh(logits / c), kept for the gradient's
    // d(capped)/d(logits) = 1 - tanh^2.
    Tensor tanh_buf = softcap > 0
                          ? torch::empty({rows_max, vocab},
                                         h.options().dtype(torch::kFloat32))
                          : Tensor();
    std::vector<double> row_loss(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t c = std::min(chunk, n - s);
      Tensor logits = buf.narrow(0, 0, c);
      torch::mm_out(logits, h.narrow(0, s, c), w.t());
      Tensor logits32 = buf32.narrow(0, 0, c);
      if (upcast) logits32.copy_(logits);
      Tensor th;
      if (softcap > 0) {
        th = tanh_buf.narrow(0, 0, c);
        torch::tanh_out(th, logits32 / softcap);
        logits32.copy_(th).mul_(softcap);
      }
      float* base = logits32.data_ptr<float>();
      at::parallel_for(0, c, /*grain_size=*/8, [&](int64_t b, int64_t e) {
        SoftmaxCrossEntropyRows(base + b * vocab, e - b, vocab, vocab,
                                tgt_data + s + b, grad_h.defined(),
                                row_loss.data() + s + b);
      });
      if (grad_h.defined()) {
        if (softcap > 0) logits32.mul_(1 - th.square());
        if (grad_w.defined()) {
          Tensor hc = h.narrow(0, s, c);
          grad_w.addmm_(logits32.t(), upcast ? hc.to(torch::kFloat32) : hc);
        }
        if (upcast) logits.copy_(logits32);
        Tensor g = grad_h.narrow(0, s, c);
        torch::mm_out(g, logits, w);
      }
    }
    // In row order, so the sum does not depend on the thread count.
    double total = 0;
    for (double l : row_loss) total += l;
    return total;
  }

  static double WithTensorOps(const Tensor& h, const Tensor& w,
                              const Tensor& targets, int64_t chunk,
                              double softcap, const Tensor& grad_h,
                              const Tensor& grad_w) {
    const int64_t n = h.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat64 &&
                        h.scalar_type() != torch::kFloat32;
    Tensor total = torch::zeros({}, h.options().dtype(torch::kFloat64));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t c = std::min(chunk, n - s);
      Tensor hc = h.narrow(0, s, c);
      Tensor tc = targets.narrow(0, s, c).unsqueeze(1);
      Tensor logits = torch::mm(hc, w.t());
      if (upcast) logits = logits.to(torch::kFloat32);
      Tensor th;
      if (softcap > 0) {
        th = torch::tanh(logits / softcap);
        logits = th * softcap;
      }
      Tensor lse = logits.logsumexp(1, /*keepdim=*/true);
      Tensor picked = logits.gather(1, tc);
      total += (lse - picked).sum().to(torch::kFloat64);
      if (grad_h.defined()) {
        // softmax - onehot, in place over the chunk's logits.
        logits.sub_(lse).exp_();
        logits.scatter_add_(1, tc, -torch::ones_like(picked));
        if (softcap > 0) logits.mul_(1 - th.square());
        if (grad_w.defined())
          grad_w.addmm_(logits.t().to(grad_w.scalar_type()),
                        hc.to(grad_w.scalar_type()));
        Tensor g = grad_h.narrow(0, s, c);
        torch::mm_out(g, logits.to(h.scalar_type()), w);
      }
    }
    return total.item<double>();
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    const double n = static_cast<double>(ctx->saved_data["n"].toInt());
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const Tensor& grad_h = saved[0];
    Tensor grad_w;
    if (ctx->saved_data["w_grad"].toBool()) {
      const auto w_dtype =
          static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
      grad_w =
          (saved[1] * (grad_out[0] / n).to(saved[1].scalar_type())).to(w_dtype);
    }
    return {grad_h * (grad_out[0] / n).to(grad_h.scalar_type()),
            grad_w,
            Tensor(),
            Tensor(),
            Tensor(),
            Tensor()};
  }
};

}  // namespace

Tensor SoftCap(const Tensor& x, double c) {
  return c > 0 ? torch::tanh(x / c) * c : x;
}

Tensor LmHeadLoss(const Tensor& h, const Tensor& w, const Tensor& targets,
                  int64_t chunk, double softcap, bool need_grad) {
  return ChunkedLmHeadLoss::apply(h, w, targets, chunk, softcap, need_grad);
}

}  // namespace ftune::train
