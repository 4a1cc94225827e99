// Readers of config.json fields for the family parsers: each names the
// field and the problem in its INVALID_ARGUMENT ("<label>: field \"x\" ...").
// An absent or null optional field leaves `*out` as it is.
//
// Thread-safety: pure functions.
#ifndef FTUNE_WORKER_TRAIN_FAMILIES_CONFIG_FIELDS_H_
#define FTUNE_WORKER_TRAIN_FAMILIES_CONFIG_FIELDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "worker/train/families/model_config.h"

namespace ftune::train::config_fields {

absl::Status Bad(absl::string_view label, absl::string_view field,
                 absl::string_view why);

// A positive integer.
absl::Status GetInt(const nlohmann::json& j, absl::string_view label,
                    const char* field, bool required, int64_t* out);
// A positive number.
absl::Status GetDouble(const nlohmann::json& j, absl::string_view label,
                       const char* field, double* out);
absl::Status GetBool(const nlohmann::json& j, absl::string_view label,
                     const char* field, bool* out);
// A string that must be one of `allowed` (the message lists them).
absl::Status GetEnum(const nlohmann::json& j, absl::string_view label,
                     const char* field, const std::vector<std::string>& allowed,
                     std::string* out);
// A non-negative number that may be null (null or absent: *out = 0).
absl::Status GetOptionalCap(const nlohmann::json& j, absl::string_view label,
                            const char* field, double* out);
// Refuses a number other than 0 / a boolean true: for options that change
// the block and that a family does not implement.
absl::Status RequireFalse(const nlohmann::json& j, absl::string_view label,
                          const char* field);

// The sizes Llama-style configs share: vocab_size, hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: num_attention_heads), max_position_embeddings,
// head_dim (default hidden_size / num_attention_heads), rms_norm_eps,
// rope_theta, tie_word_embeddings (default `tied_default`).
absl::Status ParseDecoderSizes(const nlohmann::json& j, absl::string_view label,
                               bool tied_default, ModelConfig& c);

// rope_scaling's "rope_type" (or the older "type"); "" without either.
std::string RopeType(const nlohmann::json& rope_scaling);

// "rope_scaling": null or {"rope_type"|"type": "default"} is no scaling;
// anything else is refused, naming `supported` (e.g. "\"default\"").
absl::Status RefuseRopeScaling(const nlohmann::json& j, absl::string_view label,
                               absl::string_view supported);

}  // namespace ftune::train::config_fields

#endif  // FTUNE_WORKER_TRAIN_FAMILIES_CONFIG_FIELDS_H_
