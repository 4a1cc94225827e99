// A model family: the config.json parser of one or more HF architectures
// that share a decoder block. Each family lives in its own file
// (llama.cc, phi3.cc, ...) and defines one `Family`; family.cc lists them.
// Adding a family is one new file, one line in that list, its reference
// (scripts/reference/) and its tests.
//
// A family's Parse reads every config field the block depends on, refuses
// (INVALID_ARGUMENT naming the field and the supported values) anything it
// does not implement, and fills ModelConfig, including `arch` (the block
// description and weight names). It is never handed an architecture it did
// not list.
//
// Thread-safety: families are immutable constants.
#ifndef FTUNE_WORKER_TRAIN_FAMILIES_FAMILY_H_
#define FTUNE_WORKER_TRAIN_FAMILIES_FAMILY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/families/model_config.h"

namespace ftune::train {

struct Family {
  const char* name;  // "phi3": ModelConfig::family
  std::vector<std::string> architectures;
  // `config` is a JSON object whose "architectures" is one of ours; `c`
  // arrives with architecture, family and source_json set.
  absl::Status (*parse)(const nlohmann::json& config, absl::string_view label,
                        ModelConfig& c);
};

// Every family, in the order error messages list their architectures.
const std::vector<const Family*>& Families();

// The family of `architecture`, or nullptr.
const Family* FindFamily(absl::string_view architecture);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_FAMILIES_FAMILY_H_
