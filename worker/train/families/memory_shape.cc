#include "worker/train/families/memory_shape.h"

#include <set>

namespace ftune::train {

contract::ModelShape MemoryShapeOf(const ModelConfig& c) {
  contract::ModelShape s;
  s.vocab_size = c.vocab_size;
  s.hidden_size = c.hidden_size;
  s.intermediate_size = c.intermediate_size;
  s.num_layers = c.num_hidden_layers;
  s.num_heads = c.num_attention_heads;
  s.num_kv_heads = c.num_key_value_heads;
  s.head_dim = c.head_dim;
  s.tie_word_embeddings = c.tie_word_embeddings;
  s.gated_mlp = c.arch.gated_mlp;
  for (const LinearModule& m : c.arch.modules) {
    if (m.role == ProjRole::kQkv) s.fused_qkv = true;
    if (m.role == ProjRole::kGateUp) s.fused_gate_up = true;
  }
  if (c.arch.positions == PositionKind::kLearned)
    s.learned_positions = c.max_position_embeddings;
  s.attn_softcap = c.arch.attn_softcap > 0;
  std::set<int64_t> windows;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    windows.insert(c.sliding_window(i));
  s.sliding_window_kinds = std::max<int64_t>(1, windows.size());
  return s;
}

}  // namespace ftune::train
