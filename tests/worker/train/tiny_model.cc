#include "tests/worker/train/tiny_model.h"

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "tests/worker/train/text/test_tokenizers.h"

namespace ftune::testing {

using nlohmann::json;

// A Llama-architecture model with random weights, written as a Hugging Face
// directory (config.json + model.safetensors).
absl::Status WriteTinyLlama(const std::string& dir, int64_t vocab,
                            uint64_t seed) {
  const int64_t d = 32, ff = 64, layers = 2, heads = 4, kv = 2, hd = d / heads;
  json cfg = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", vocab},
              {"hidden_size", d},
              {"intermediate_size", ff},
              {"num_hidden_layers", layers},
              {"num_attention_heads", heads},
              {"num_key_value_heads", kv},
              {"max_position_embeddings", 512},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},
              {"tie_word_embeddings", false},
              {"hidden_act", "silu"},
              {"torch_dtype", "float32"}};
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  FTUNE_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(dir, "config.json"), cfg.dump(2)));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SafetensorsWriter w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float std,
                 float mean) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v(n);
    for (float& x : v) x = mean + std * normal(rng);
    return w.Add(name, StDType::kF32, shape, v.data(),
                 v.size() * sizeof(float));
  };
  FTUNE_RETURN_IF_ERROR(add("model.embed_tokens.weight", {vocab, d}, 1.0f, 0));
  FTUNE_RETURN_IF_ERROR(add("model.norm.weight", {d}, 0.0f, 1));
  FTUNE_RETURN_IF_ERROR(add("lm_head.weight", {vocab, d}, 0.1f, 0));
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    FTUNE_RETURN_IF_ERROR(add(p + "input_layernorm.weight", {d}, 0.0f, 1));
    FTUNE_RETURN_IF_ERROR(
        add(p + "post_attention_layernorm.weight", {d}, 0.0f, 1));
    FTUNE_RETURN_IF_ERROR(
        add(p + "self_attn.q_proj.weight", {heads * hd, d}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(
        add(p + "self_attn.k_proj.weight", {kv * hd, d}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(
        add(p + "self_attn.v_proj.weight", {kv * hd, d}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(
        add(p + "self_attn.o_proj.weight", {d, heads * hd}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(add(p + "mlp.gate_proj.weight", {ff, d}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(add(p + "mlp.up_proj.weight", {ff, d}, 0.1f, 0));
    FTUNE_RETURN_IF_ERROR(add(p + "mlp.down_proj.weight", {d, ff}, 0.1f, 0));
  }
  return w.WriteAtomically(JoinPath(dir, "model.safetensors"));
}

// A byte-level BPE (ids 0..255 are bytes, 300.. specials such as
// <|im_start|>) whose tokenizer_config.json carries a ChatML template.
absl::Status WriteChatTokenizer(const std::string& dir) {
  FTUNE_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(dir, "tokenizer.json"),
                                            train::testing::ByteLevelJson({})));
  json config = {
      {"eos_token", "<|im_end|>"},
      {"pad_token", "<|endoftext|>"},
      {"add_bos_token", false},
      {"chat_template",
       "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
       "'\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"}};
  return WriteFileAtomically(JoinPath(dir, "tokenizer_config.json"),
                             config.dump());
}

std::string ReversedWordChats(int n, uint64_t seed) {
  static const char* kWords[] = {"cat", "dog", "bird", "fish", "cow", "owl"};
  std::mt19937_64 rng(seed);
  std::string out;
  for (int i = 0; i < n; ++i) {
    const std::string w = kWords[rng() % 6];
    absl::StrAppend(&out,
                    json{{"messages",
                          {{{"role", "user"}, {"content", w}},
                           {{"role", "assistant"},
                            {"content", std::string(w.rbegin(), w.rend())}}}}}
                        .dump(),
                    "\n");
  }
  return out;
}

absl::Status WritePreferencePairs(const std::string& path, int n, uint64_t seed,
                                  bool varied_prompts) {
  std::mt19937_64 rng(seed);
  auto word = [&](char first) {
    std::string w;
    for (size_t i = 0, len = 3 + rng() % 4; i < len; ++i) {
      w += static_cast<char>(first + rng() % 5);
    }
    return w;
  };
  std::string text;
  for (int i = 0; i < n; ++i) {
    std::string prompt = "say:";
    if (varied_prompts) {
      prompt = "say ";
      prompt += static_cast<char>('g' + rng() % 10);
      prompt += static_cast<char>('g' + rng() % 10);
      prompt += ":";
    }
    absl::StrAppend(&text,
                    json{{"prompt", prompt},
                         {"chosen", " " + word('a')},
                         {"rejected", " " + word('v')}}
                        .dump(),
                    "\n");
  }
  return WriteFileAtomically(path, text);
}

}  // namespace ftune::testing
