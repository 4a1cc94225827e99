#include "worker/train/nn/blocked_attention.h"

#include <algorithm>
#include <limits>
#include <map>

#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;

torch::Dtype AccumulationDtype(torch::Dtype dtype) {
  return dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// One block's scores in the accumulation dtype, soft-capped and masked,
// [B, h, n, L]; `capped` gets tanh(scores / softcap) when softcap > 0 (its
// derivative is needed in backward). qg [B, kv, g * n, hd].
Tensor BlockScores(const Tensor& qg, const Tensor& kb, const Tensor& masked,
                   int64_t h, double softcap, Tensor* capped) {
  const int64_t b = qg.size(0), n = masked.size(2), len = kb.size(2);
  Tensor s = torch::matmul(qg, kb.transpose(-2, -1))
                 .view({b, h, n, len})
                 .to(AccumulationDtype(qg.scalar_type()));
  if (softcap > 0) {
    *capped = torch::tanh(s / softcap);
    s = *capped * softcap;
  }
  return s.masked_fill_(masked, -std::numeric_limits<double>::infinity());
}

// The query block [B, h, n, hd] of x as [B, kv, g * n, hd]: query heads
// h = kv * g consecutive, so one GEMM per kv head serves its g heads.
Tensor GroupedRows(const Tensor& x, int64_t q0, int64_t n, int64_t kv) {
  const int64_t b = x.size(0), h = x.size(1), hd = x.size(3);
  return x.narrow(2, q0, n).reshape({b, kv, (h / kv) * n, hd});
}

class BlockedAttentionFunction
    : public torch::autograd::Function<BlockedAttentionFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor q,
                        Tensor k, Tensor v, AttentionBlocks* plan,
                        double softcap) {
    const int64_t b = q.size(0), h = q.size(1), t = q.size(2), hd = q.size(3),
                  kv = k.size(1);
    const auto dtype = q.scalar_type();
    Tensor out = torch::empty({b, h, t, hd}, q.options());
    std::vector<Tensor> probs, capped_all;
    for (size_t i = 0; i < plan->q0.size(); ++i) {
      const int64_t q0 = plan->q0[i], n = plan->n[i], lo = plan->lo[i],
                    len = plan->len[i];
      Tensor capped;
      Tensor s = BlockScores(GroupedRows(q, q0, n, kv), k.narrow(2, lo, len),
                             plan->masked[i], h, softcap, &capped);
      Tensor p = torch::softmax(s, -1);  // [B, h, n, L], acc dtype
      out.narrow(2, q0, n).copy_(
          torch::matmul(p.to(dtype).view({b, kv, -1, len}),
                        v.narrow(2, lo, len))
              .view({b, h, n, hd}));
      probs.push_back(p);
      if (softcap > 0) capped_all.push_back(capped);
    }
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["q0"] = plan->q0;
    ctx->saved_data["n"] = plan->n;
    ctx->saved_data["lo"] = plan->lo;
    ctx->saved_data["len"] = plan->len;
    ctx->saved_data["probs"] = probs;
    ctx->saved_data["capped"] = capped_all;
    ctx->saved_data["softcap"] = softcap;
    return out;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    const Tensor &q = saved[0], &k = saved[1], &v = saved[2];
    const std::vector<int64_t> q0s = ctx->saved_data["q0"].toIntVector(),
                               ns = ctx->saved_data["n"].toIntVector(),
                               los = ctx->saved_data["lo"].toIntVector(),
                               lens = ctx->saved_data["len"].toIntVector();
    const std::vector<Tensor> probs = ctx->saved_data["probs"].toTensorVector();
    const std::vector<Tensor> capped =
        ctx->saved_data["capped"].toTensorVector();
    const double softcap = ctx->saved_data["softcap"].toDouble();
    const int64_t b = q.size(0), h = q.size(1), hd = q.size(3), kv = k.size(1);
    const auto dtype = q.scalar_type();
    const auto acc = AccumulationDtype(dtype);
    const Tensor dout = grad_out[0].contiguous();
    Tensor dq = torch::empty_like(q, torch::MemoryFormat::Contiguous);
    // Key blocks overlap across query blocks: accumulate in fp32 (fp64).
    Tensor dk = torch::zeros(k.sizes(), k.options().dtype(acc));
    Tensor dv = torch::zeros(v.sizes(), v.options().dtype(acc));
    for (size_t i = 0; i < q0s.size(); ++i) {
      const int64_t q0 = q0s[i], n = ns[i], lo = los[i], len = lens[i];
      const Tensor qg = GroupedRows(q, q0, n, kv);
      const Tensor kb = k.narrow(2, lo, len), vb = v.narrow(2, lo, len);
      const Tensor dog = GroupedRows(dout, q0, n, kv);
      const Tensor& p = probs[i];  // [B, h, n, L], acc
      dv.narrow(2, lo, len)
          .add_(torch::matmul(
              p.to(dtype).view({b, kv, -1, len}).transpose(-2, -1), dog));
      Tensor dp =
          torch::matmul(dog, vb.transpose(-2, -1)).view({b, h, n, len}).to(acc);
      // p * (dp - sum(p * dp)) in one pass; masked entries have p = 0.
      Tensor ds = at::_softmax_backward_data(dp, p, -1, acc);
      if (softcap > 0) ds.mul_(1 - capped[i] * capped[i]);
      Tensor dsg = ds.to(dtype).view({b, kv, -1, len});
      dq.narrow(2, q0, n).copy_(torch::matmul(dsg, kb).view({b, h, n, hd}));
      dk.narrow(2, lo, len).add_(torch::matmul(dsg.transpose(-2, -1), qg));
    }
    return {dq, dk.to(dtype), dv.to(dtype), Tensor(), Tensor()};
  }
};

}  // namespace

AttentionBlocks PlanAttentionBlocks(const Tensor& segment_ids, int64_t window,
                                    int64_t block) {
  TORCH_CHECK(block > 0, "attention block must be positive, got ", block);
  const Tensor segs = segment_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t b = segs.size(0), t = segs.size(1);
  // The earliest key each query may see: its segment's first token (ids
  // need not be contiguous runs), or its window's start if later.
  std::vector<int64_t> lowest(t, std::numeric_limits<int64_t>::max());
  const int64_t* ids = segs.data_ptr<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    std::map<int64_t, int64_t> first;
    for (int64_t i = 0; i < t; ++i) {
      const int64_t f = first.emplace(ids[r * t + i], i).first->second;
      const int64_t from = window > 0 ? std::max(f, i - window + 1) : f;
      lowest[i] = std::min(lowest[i], from);
    }
  }
  AttentionBlocks plan;
  const torch::Device device = segment_ids.device();
  const Tensor dev_segs = segment_ids.to(torch::kInt64);
  const auto index = torch::TensorOptions().dtype(torch::kInt64).device(device);
  for (int64_t q0 = 0; q0 < t; q0 += block) {
    const int64_t n = std::min(block, t - q0);
    const int64_t lo =
        *std::min_element(lowest.begin() + q0, lowest.begin() + q0 + n);
    const int64_t len = q0 + n - lo;
    // Query i and key j may meet when j <= i, i - j < window (if any), and
    // both are in the same segment.
    Tensor diff = torch::arange(q0, q0 + n, index).unsqueeze(1) -
                  torch::arange(lo, lo + len, index).unsqueeze(0);
    Tensor masked = diff.lt(0);
    if (window > 0) masked.logical_or_(diff.ge(window));
    masked = dev_segs.narrow(1, q0, n)
                 .unsqueeze(2)
                 .ne(dev_segs.narrow(1, lo, len).unsqueeze(1))
                 .logical_or_(masked.unsqueeze(0))
                 .unsqueeze(1);
    plan.q0.push_back(q0);
    plan.n.push_back(n);
    plan.lo.push_back(lo);
    plan.len.push_back(len);
    plan.masked.push_back(masked);
  }
  return plan;
}

Tensor BlockedAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segment_ids, int64_t window,
                        double softcap, int64_t block) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "BlockedAttention: q, k, v must be [B, heads, T, head_dim]");
  TORCH_CHECK(k.size(2) == q.size(2) && v.size(2) == q.size(2),
              "BlockedAttention: keys ", k.size(2), " != queries ", q.size(2),
              " (no cache: use Attend)");
  TORCH_CHECK(q.size(1) % k.size(1) == 0, "BlockedAttention: ", k.size(1),
              " kv heads do not divide ", q.size(1), " query heads");
  TORCH_CHECK(segment_ids.dim() == 2 && segment_ids.size(0) == q.size(0) &&
                  segment_ids.size(1) == q.size(2),
              "BlockedAttention: segment ids must be [B, T]");
  AttentionBlocks plan = PlanAttentionBlocks(segment_ids, window, block);
  // Contiguous [B, heads, T, hd] once, so that every block's rows are a
  // strided batch the GEMMs take as they are (no copy per block).
  return BlockedAttentionFunction::apply(q.contiguous(), k.contiguous(),
                                         v.contiguous(), &plan, softcap);
}

bool SingleSegmentRows(const Tensor& segment_ids) {
  const Tensor segs = segment_ids.to(torch::kInt64);
  // Real tokens carry row's first id (not padding); padding only after.
  const Tensor first = segs.narrow(1, 0, 1);
  const Tensor real = segs.ne(-1);
  if (first.eq(-1).any().item<bool>()) return false;
  if (!(segs.eq(first) | real.logical_not()).all().item<bool>()) return false;
  // No real token after padding: real is non-increasing along the row.
  const int64_t t = segs.size(1);
  if (t < 2) return true;
  return !(real.narrow(1, 1, t - 1) & real.narrow(1, 0, t - 1).logical_not())
              .any()
              .item<bool>();
}

Tensor SegmentAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segment_ids, int64_t window,
                        double softcap, int64_t block) {
  if (q.is_cuda() && window == 0 && softcap == 0 &&
      compat::HasScaledDotProductAttention() &&
      SingleSegmentRows(segment_ids)) {
    const int64_t groups = q.size(1) / k.size(1);
    return compat::CausalScaledDotProductAttention(
        q, groups > 1 ? k.repeat_interleave(groups, 1) : k,
        groups > 1 ? v.repeat_interleave(groups, 1) : v);
  }
  return BlockedAttention(q, k, v, segment_ids, window, softcap, block);
}

}  // namespace ftune::train
