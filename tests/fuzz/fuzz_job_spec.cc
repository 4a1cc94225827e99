// The request validation of CreateJob (server/core/spec_validation.h) on a
// JobSpec parsed from the fuzz bytes: the protobuf wire format, or its text
// format (what the seed corpus holds, so mutations start from real specs).
// Properties: no crash; the error text a client receives stays small
// (issue 16, defect 3), and so does every field path; a spec that passes,
// once its defaults are resolved, passes again (the scheduler stores the
// resolved spec).
#include <cstdint>
#include <string>
#include <vector>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "ftune/v1/job_spec.pb.h"
#include "server/core/spec_validation.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Parse errors are expected: keep them off stderr.
class Quiet : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int, int, const std::string&) override {}
};

ftune::core::SpecContext Context(const ftune::v1::JobSpec& spec) {
  ftune::core::SpecContext ctx;
  ftune::core::ModelFacts model;
  model.name = spec.model();
  model.max_position_embeddings = 4096;
  model.default_chat_template = "chatml";
  if (spec.model() == "tiny") ctx.model = model;  // Others are unknown.
  ftune::core::FileFacts file;
  file.purpose = ftune::core::kFilePurposeTrain;
  file.ready = true;
  file.format = "chat";
  file.example_count = 100;
  if (spec.training_file().rfind("file-", 0) == 0) {
    file.id = spec.training_file();
    ctx.training_file = file;
  }
  if (spec.validation_case() == ftune::v1::JobSpec::kValidationFile &&
      spec.validation_file().rfind("file-", 0) == 0) {
    file.id = spec.validation_file();
    file.purpose = ftune::core::kFilePurposeValidation;
    file.example_count = 10;
    ctx.validation_file = file;
  }
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ftune::v1::JobSpec spec;
  if (!spec.ParseFromArray(data, static_cast<int>(size))) {
    Quiet quiet;
    google::protobuf::TextFormat::Parser parser;
    parser.RecordErrorsTo(&quiet);
    parser.AllowPartialMessage(true);
    spec.Clear();
    if (!parser.ParseFromString(
            std::string(reinterpret_cast<const char*>(data), size), &spec)) {
      return 0;
    }
  }
  const ftune::core::SpecContext ctx = Context(spec);
  const std::vector<ftune::core::FieldError> errors =
      ftune::core::ValidateJobSpec(spec, ctx);
  if (!errors.empty()) {
    FUZZ_CHECK(ftune::core::JoinFieldErrors(errors).size() <= 8192);
    for (const ftune::core::FieldError& e : errors) {
      FUZZ_CHECK(e.field.size() <= 512);
    }
    return 0;
  }
  const ftune::v1::JobSpec resolved =
      ftune::core::ResolveJobSpec(spec, *ctx.model, /*default_seed=*/7);
  FUZZ_CHECK(ftune::core::ValidateJobSpec(resolved, ctx).empty());
  (void)ftune::core::EstimateJob(resolved, ctx.training_file->example_count,
                                 10);
  return 0;
}
