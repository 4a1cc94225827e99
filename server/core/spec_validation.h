// Validation and default resolution of a ftune.v1.JobSpec, as pure code: no
// gRPC, no store. The caller (JobService) looks up the model and files and
// passes what it found in a SpecContext; every problem is reported, not only
// the first, each naming the field as a dotted path from CreateJobRequest
// ("spec.hyperparameters.learning_rate").
//
// This is the one part of server/core that sees protobuf (the spec is a
// proto by contract); it is its own library (ftune_spec_validation) so
// ftune_sched_core stays protobuf-free.
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_CORE_SPEC_VALIDATION_H_
#define FTUNE_SERVER_CORE_SPEC_VALIDATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ftune/v1/job_service.pb.h"
#include "ftune/v1/job_spec.pb.h"

namespace ftune::core {

struct FieldError {
  std::string field;    // e.g. "spec.lora.rank"
  std::string message;  // e.g. "must be in [1, 256], got 0"
};

// File purposes and formats as FileService stores them in
// core::FileRecord::purpose / format.
inline constexpr char kFilePurposeTrain[] = "fine-tune-train";
inline constexpr char kFilePurposeValidation[] = "fine-tune-validation";
// Usable as either (OpenAI's purpose): neither check refuses it.
inline constexpr char kFilePurposeFineTune[] = "fine-tune";

// The seven Llama linear modules, in the order "all-linear" expands to.
const std::vector<std::string>& LlamaLinearModules();

// What the spec's model is, as far as validation cares.
struct ModelFacts {
  std::string name;
  int64_t max_position_embeddings = 0;  // 0 = unknown (no upper bound).
  bool supports_lora = true;
  bool supports_qlora = true;
  std::string default_chat_template;  // "" = none recognised.
  // The family's LoRA module names (PEFT spelling) in the order
  // "all-linear" expands to (worker/train/families: the same code that
  // parsed the model's config.json at registration).
  std::vector<std::string> linear_modules = LlamaLinearModules();
  // Non-empty when the trainer cannot run the model: why, naming the
  // config field and the supported values.
  std::string unsupported = "";
  // TRAINING_METHOD_FULL (last, so aggregate initialisers of the fields
  // above keep their meaning).
  bool supports_full = true;
};

// What a file named in the spec is.
struct FileFacts {
  std::string id;
  std::string purpose;  // core::FileRecord::purpose
  bool ready = false;
  // "chat", "prompt_completion", "text", "preference", "chat_preference"
  std::string format;
  int64_t example_count = 0;
};

// Lookup results. An unset optional means "not found for this tenant".
struct SpecContext {
  std::optional<ModelFacts> model;
  std::optional<FileFacts> training_file;
  std::optional<FileFacts> validation_file;
};

// Every problem of `spec`, in field order; empty when valid. Checks ranges
// and syntax of every field, and the model/file facts in `ctx`.
std::vector<FieldError> ValidateJobSpec(const v1::JobSpec& spec,
                                        const SpecContext& ctx);

// Errors JoinFieldErrors lists; the rest are counted.
inline constexpr size_t kMaxJoinedFieldErrors = 10;

// One line listing the errors: "spec.a: x; spec.b: y", at most
// kMaxJoinedFieldErrors of them, then "; and N more".
std::string JoinFieldErrors(const std::vector<FieldError>& errors);

// Returns `spec` with every server-side default resolved (see
// job_spec.proto): method, objective and its preference settings, LoRA shape,
// quantization (QLoRA), length, learning rate, scheduler, warmup, batch,
// max_seq_length (needs `model`), chat_template "auto" -> the model's template,
// seed (`default_seed` when unset), restarts, checkpoints, resources. Call only
// on a valid spec.
v1::JobSpec ResolveJobSpec(const v1::JobSpec& spec, const ModelFacts& model,
                           int64_t default_seed);

// The plan of a resolved spec given the training file's example count.
v1::JobEstimate EstimateJob(const v1::JobSpec& resolved,
                            int64_t training_examples,
                            int64_t validation_file_examples);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_SPEC_VALIDATION_H_
