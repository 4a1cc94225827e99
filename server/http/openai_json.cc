#include "server/http/openai_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/contract/limits.h"
#include "common/status.h"
#include "google/protobuf/util/json_util.h"
#include "server/engine/error_info.h"

namespace ftune::server::http {
namespace {

using nlohmann::json;

constexpr char kSupervisedParams[] = "method.supervised.hyperparameters";
constexpr char kDpoParams[] = "method.dpo.hyperparameters";

int64_t Seconds(const google::protobuf::Timestamp& t) { return t.seconds(); }

// Seconds, or null for an unset time.
json TimeOrNull(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return nullptr;
  return Seconds(t);
}

json StringOrNull(const std::string& s) {
  if (s.empty()) return nullptr;
  return s;
}

std::string TypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a number";
  }
}

absl::Status WrongType(const std::string& param, const json& value,
                       absl::string_view want) {
  return InvalidParam(param, absl::StrCat(param, ": expected ", want, ", got ",
                                          TypeName(value)));
}

// Refuses keys of `object` outside `known`, naming the first one.
absl::Status OnlyKnownKeys(const json& object, const std::string& prefix,
                           const std::set<std::string>& known) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (known.count(it.key()) == 0) {
      const std::string param = absl::StrCat(prefix, it.key());
      return InvalidParam(
          param,
          absl::StrCat("Unrecognized request argument supplied: ", param));
    }
  }
  return absl::OkStatus();
}

// A string field; nullopt when absent or null.
absl::StatusOr<std::optional<std::string>> OptionalString(
    const json& object, const std::string& key, const std::string& param) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return WrongType(param, *it, "a string");
  return it->get<std::string>();
}

// An OpenAI hyperparameter: "auto" (or absent/null) = nullopt, else a
// number; `integer` refuses fractions.
absl::StatusOr<std::optional<double>> AutoOrNumber(const json& object,
                                                   const std::string& key,
                                                   const std::string& param,
                                                   bool integer) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) {
    if (it->get<std::string>() == "auto") return std::nullopt;
    return InvalidParam(param, absl::StrCat(param, ": expected \"auto\" or a ",
                                            integer ? "integer" : "number"));
  }
  if (!it->is_number()) {
    return WrongType(
        param, *it,
        integer ? "\"auto\" or an integer" : "\"auto\" or a number");
  }
  const double v = it->get<double>();
  if (integer && (!it->is_number_integer() && !it->is_number_unsigned())) {
    return InvalidParam(param, absl::StrCat(param, ": must be an integer"));
  }
  if (!std::isfinite(v) || v <= 0) {
    return InvalidParam(param, absl::StrCat(param, ": must be > 0"));
  }
  return v;
}

// method.supervised.hyperparameters (or the top-level hyperparameters
// OpenAI still accepts) into the spec.
// With `dpo`, method.dpo.hyperparameters: also "beta" (ftune's
// preference.beta).
absl::Status ApplyHyperparameters(const json& h, const std::string& prefix,
                                  v1::JobSpec* spec, bool dpo = false) {
  if (!h.is_object()) return WrongType(prefix, h, "an object");
  std::set<std::string> known = {"n_epochs", "batch_size",
                                 "learning_rate_multiplier"};
  if (dpo) known.insert("beta");
  FTUNE_RETURN_IF_ERROR(OnlyKnownKeys(h, prefix + ".", known));
  if (dpo) {
    FTUNE_ASSIGN_OR_RETURN(
        std::optional<double> beta,
        AutoOrNumber(h, "beta", prefix + ".beta", /*integer=*/false));
    if (beta) spec->mutable_preference()->set_beta(*beta);
  }
  v1::Hyperparameters* hp = spec->mutable_hyperparameters();
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<double> epochs,
      AutoOrNumber(h, "n_epochs", prefix + ".n_epochs", /*integer=*/true));
  if (epochs) hp->set_epochs(*epochs);
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<double> batch,
      AutoOrNumber(h, "batch_size", prefix + ".batch_size", /*integer=*/true));
  if (batch) {
    if (*batch > 1 << 20) {
      return InvalidParam(prefix + ".batch_size",
                          prefix + ".batch_size: too large");
    }
    hp->set_batch_size(static_cast<int32_t>(*batch));
  }
  FTUNE_ASSIGN_OR_RETURN(std::optional<double> lr_mult,
                         AutoOrNumber(h, "learning_rate_multiplier",
                                      prefix + ".learning_rate_multiplier",
                                      /*integer=*/false));
  if (lr_mult) {
    hp->set_learning_rate(*lr_mult * contract::defaults::kLearningRate);
  }
  return absl::OkStatus();
}

absl::Status ApplyMethod(const json& method, v1::JobSpec* spec) {
  if (!method.is_object()) return WrongType("method", method, "an object");
  FTUNE_RETURN_IF_ERROR(OnlyKnownKeys(
      method, "method.", {"type", "supervised", "dpo", "reinforcement"}));
  FTUNE_ASSIGN_OR_RETURN(std::optional<std::string> type,
                         OptionalString(method, "type", "method.type"));
  if (!type) return InvalidParam("method.type", "method.type is required");
  if (*type == "dpo") {
    // TRAINING_OBJECTIVE_DPO on a preference file (OpenAI's DPO lines are
    // ftune's chat_preference format).
    for (const char* other : {"supervised", "reinforcement"}) {
      if (method.contains(other)) {
        return InvalidParam(absl::StrCat("method.", other),
                            absl::StrCat("method.", other,
                                         " does not go with method.type dpo"));
      }
    }
    spec->set_objective(v1::TRAINING_OBJECTIVE_DPO);
    auto it = method.find("dpo");
    if (it == method.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_object()) return WrongType("method.dpo", *it, "an object");
    FTUNE_RETURN_IF_ERROR(
        OnlyKnownKeys(*it, "method.dpo.", {"hyperparameters"}));
    auto h = it->find("hyperparameters");
    if (h == it->end() || h->is_null()) return absl::OkStatus();
    return ApplyHyperparameters(*h, kDpoParams, spec, /*dpo=*/true);
  }
  if (*type == "reinforcement") {
    return InvalidParam("method.type",
                        "reinforcement is not supported by this server");
  }
  if (*type != "supervised") {
    return InvalidParam("method.type",
                        absl::StrCat("method.type: unknown method \"", *type,
                                     "\" (supported: supervised, dpo)"));
  }
  for (const char* other : {"dpo", "reinforcement"}) {
    if (method.contains(other)) {
      return InvalidParam(absl::StrCat("method.", other),
                          absl::StrCat("method.", other,
                                       " does not go with method.type "
                                       "supervised"));
    }
  }
  auto it = method.find("supervised");
  if (it == method.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return WrongType("method.supervised", *it, "an object");
  FTUNE_RETURN_IF_ERROR(
      OnlyKnownKeys(*it, "method.supervised.", {"hyperparameters"}));
  auto h = it->find("hyperparameters");
  if (h == it->end() || h->is_null()) return absl::OkStatus();
  return ApplyHyperparameters(*h, kSupervisedParams, spec);
}

// The "ftune" extension object: proto3 JSON of a JobSpec, for the fields
// OpenAI has no name for.
absl::Status ApplyExtension(const json& ext, v1::JobSpec* spec) {
  if (!ext.is_object()) return WrongType("ftune", ext, "an object");
  v1::JobSpec extra;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(ext.dump(), &extra, options);
  if (!parsed.ok()) {
    return InvalidParam("ftune",
                        absl::StrCat("ftune: not a JobSpec (docs/api.md): ",
                                     std::string(parsed.message())));
  }
  // The OpenAI fields are named once, at the top level.
  const std::pair<bool, const char*> top_level[] = {
      {!extra.model().empty(), "model"},
      {!extra.training_file().empty(), "training_file"},
      {extra.has_validation_file() && !extra.validation_file().empty(),
       "validation_file"},
      {!extra.suffix().empty(), "suffix"},
      {!extra.labels().empty(), "labels"},
  };
  for (const auto& [set, name] : top_level) {
    if (set) {
      return InvalidParam(
          absl::StrCat("ftune.", name),
          absl::StrCat("ftune.", name, ": give it at the top level (",
                       std::string(name) == "labels" ? "metadata" : name, ")"));
    }
  }
  const v1::Hyperparameters& h = spec->hyperparameters();
  const v1::Hyperparameters& eh = extra.hyperparameters();
  const std::pair<bool, const char*> twice[] = {
      {h.has_epochs() && (eh.has_epochs() || eh.has_max_steps()),
       "hyperparameters.epochs"},
      {h.batch_size() != 0 && eh.batch_size() != 0,
       "hyperparameters.batch_size"},
      {h.learning_rate() != 0 && eh.learning_rate() != 0,
       "hyperparameters.learning_rate"},
      {h.has_seed() && eh.has_seed(), "hyperparameters.seed"},
  };
  for (const auto& [both, name] : twice) {
    if (both) {
      return InvalidParam(
          absl::StrCat("ftune.", name),
          absl::StrCat("ftune.", name,
                       " is also given by an OpenAI field (n_epochs, "
                       "batch_size, learning_rate_multiplier, seed)"));
    }
  }
  v1::Hyperparameters merged = h;
  spec->MergeFrom(extra);
  // MergeFrom replaced the oneof: keep the OpenAI epochs unless the
  // extension set the length.
  if (merged.has_epochs() && !eh.has_max_steps()) {
    spec->mutable_hyperparameters()->set_epochs(merged.epochs());
  }
  return absl::OkStatus();
}

absl::Status ApplyMetadata(const json& metadata, v1::JobSpec* spec) {
  if (metadata.is_null()) return absl::OkStatus();
  if (!metadata.is_object()) {
    return WrongType("metadata", metadata, "an object of strings");
  }
  // OpenAI's limits: 16 pairs, keys up to 64 and values up to 512
  // characters; ftune's label rules apply on top (server/core/labels.h).
  if (metadata.size() > 16) {
    return InvalidParam("metadata", "metadata: at most 16 keys");
  }
  for (auto it = metadata.begin(); it != metadata.end(); ++it) {
    const std::string param = absl::StrCat("metadata.", it.key());
    if (!it->is_string()) return WrongType(param, *it, "a string");
    if (it.key().size() > 64) {
      return InvalidParam(param, "metadata keys are at most 64 characters");
    }
    if (it->get<std::string>().size() > 512) {
      return InvalidParam(param,
                          absl::StrCat(param, ": at most 512 characters"));
    }
    (*spec->mutable_labels())[it.key()] = it->get<std::string>();
  }
  return absl::OkStatus();
}

std::string Level(const v1::JobEvent& e) {
  if (e.to_state() == v1::JOB_STATE_FAILED) return "error";
  switch (e.type()) {
    case v1::JOB_EVENT_TYPE_WARNING:
    case v1::JOB_EVENT_TYPE_ATTEMPT_FAILED:
    case v1::JOB_EVENT_TYPE_LEASE_EXPIRED:
    case v1::JOB_EVENT_TYPE_WORKER_LOST:
    case v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED:
      return "warn";
    default:
      return "info";
  }
}

// "JOB_EVENT_TYPE_CHECKPOINT_SAVED" -> "checkpoint_saved".
std::string EventTypeName(v1::JobEventType type) {
  std::string name = v1::JobEventType_Name(type);
  absl::string_view view = name;
  absl::ConsumePrefix(&view, "JOB_EVENT_TYPE_");
  return absl::AsciiStrToLower(view);
}

}  // namespace

json ApiError::Body() const {
  json error = {{"message", message},
                {"type", type},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", error}};
}

absl::Status InvalidParam(std::string param, std::string message) {
  return engine::InvalidField(std::move(param), std::move(message));
}

std::string ParamForField(absl::string_view field) {
  absl::string_view rest = field;
  if (!absl::ConsumePrefix(&rest, "spec.")) {
    if (field == "request_id") return "Idempotency-Key";
    return std::string(field);
  }
  const std::pair<const char*, std::string> renames[] = {
      {"model", "model"},
      {"training_file", "training_file"},
      {"validation_file", "validation_file"},
      {"suffix", "suffix"},
      {"hyperparameters.epochs", absl::StrCat(kSupervisedParams, ".n_epochs")},
      {"hyperparameters.batch_size",
       absl::StrCat(kSupervisedParams, ".batch_size")},
      {"hyperparameters.learning_rate",
       absl::StrCat(kSupervisedParams, ".learning_rate_multiplier")},
      {"hyperparameters.seed", "seed"},
      {"preference.beta", absl::StrCat(kDpoParams, ".beta")},
  };
  for (const auto& [from, to] : renames) {
    if (rest == from) return to;
  }
  if (absl::ConsumePrefix(&rest, "labels")) {
    return absl::StrCat("metadata", rest);
  }
  return absl::StrCat("ftune.", rest);
}

ApiError ErrorFromStatus(const absl::Status& status) {
  ApiError e;
  e.message = std::string(status.message());
  std::optional<v1::ErrorInfo> info = engine::GetErrorInfo(status);
  if (info && !info->field().empty()) e.param = ParamForField(info->field());
  e.type = "invalid_request_error";
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      e.http_status = 400;
      e.code = "invalid_argument";
      break;
    case absl::StatusCode::kFailedPrecondition:
      e.http_status = 400;
      e.code = "invalid_state";
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.code = "permission_denied";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.code = "not_found";
      break;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      e.http_status = 409;
      e.code = "conflict";
      break;
    case absl::StatusCode::kResourceExhausted:
      if (info && (info->quota() == "max_file_size_bytes" ||
                   info->quota() == "max_body_bytes")) {
        e.http_status = 413;
        e.code = "file_too_large";
        if (e.param.empty()) e.param = "file";
      } else if (info && info->quota() == "tenant_requests_per_second") {
        e.http_status = 429;
        e.type = "requests";
        e.code = "rate_limit_exceeded";
        // Whole seconds, rounded up (HTTP's Retry-After).
        const google::protobuf::Duration& d = info->retry_delay();
        e.retry_after_seconds =
            std::max<int64_t>(1, d.seconds() + (d.nanos() > 0 ? 1 : 0));
      } else {
        e.http_status = 429;
        e.type = "insufficient_quota";
        e.code = "quota_exceeded";
      }
      break;
    case absl::StatusCode::kUnimplemented:
      e.http_status = 501;
      e.type = "server_error";
      e.code = "unimplemented";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "server_error";
      e.code = "unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "server_error";
      e.code = "timeout";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      e.code = "internal_error";
      break;
  }
  return e;
}

absl::StatusOr<v1::CreateJobRequest> ParseCreateJob(const json& body) {
  if (!body.is_object()) {
    return InvalidParam("", absl::StrCat("the request body must be a JSON "
                                         "object, got ",
                                         TypeName(body)));
  }
  FTUNE_RETURN_IF_ERROR(OnlyKnownKeys(
      body, "",
      {"model", "training_file", "validation_file", "suffix", "seed",
       "metadata", "method", "hyperparameters", "integrations", "ftune"}));
  v1::CreateJobRequest request;
  v1::JobSpec* spec = request.mutable_spec();
  FTUNE_ASSIGN_OR_RETURN(std::optional<std::string> model,
                         OptionalString(body, "model", "model"));
  if (!model || model->empty()) {
    return InvalidParam("model", "model is required");
  }
  spec->set_model(*model);
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<std::string> training,
      OptionalString(body, "training_file", "training_file"));
  if (!training || training->empty()) {
    return InvalidParam("training_file", "training_file is required");
  }
  spec->set_training_file(*training);
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<std::string> validation,
      OptionalString(body, "validation_file", "validation_file"));
  if (validation && !validation->empty()) {
    spec->set_validation_file(*validation);
  }
  FTUNE_ASSIGN_OR_RETURN(std::optional<std::string> suffix,
                         OptionalString(body, "suffix", "suffix"));
  if (suffix) spec->set_suffix(*suffix);
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      return WrongType("seed", *it, "an integer");
    }
    if (it->is_number_integer() && it->get<int64_t>() < 0) {
      return InvalidParam("seed", "seed: must be >= 0");
    }
    spec->mutable_hyperparameters()->set_seed(it->get<int64_t>());
  }
  if (auto it = body.find("metadata"); it != body.end()) {
    FTUNE_RETURN_IF_ERROR(ApplyMetadata(*it, spec));
  }
  if (auto it = body.find("integrations"); it != body.end()) {
    if (!it->is_null() && !(it->is_array() && it->empty())) {
      return InvalidParam("integrations",
                          "integrations are not supported by this server");
    }
  }
  const bool has_method =
      body.contains("method") && !body.at("method").is_null();
  const bool has_top_hp =
      body.contains("hyperparameters") && !body.at("hyperparameters").is_null();
  if (has_method && has_top_hp) {
    return InvalidParam("hyperparameters",
                        "hyperparameters: give them in "
                        "method.supervised.hyperparameters only");
  }
  if (has_method) FTUNE_RETURN_IF_ERROR(ApplyMethod(body.at("method"), spec));
  if (has_top_hp) {
    FTUNE_RETURN_IF_ERROR(ApplyHyperparameters(body.at("hyperparameters"),
                                               "hyperparameters", spec));
  }
  if (auto it = body.find("ftune"); it != body.end() && !it->is_null()) {
    FTUNE_RETURN_IF_ERROR(ApplyExtension(*it, spec));
  }
  return request;
}

std::string JobStatusName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_QUEUED:
      return "queued";
    case v1::JOB_STATE_RUNNING:
    case v1::JOB_STATE_CANCELLING:
      return "running";
    case v1::JOB_STATE_PAUSED:
      return "paused";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    default:
      return "validating_files";
  }
}

json FileJson(const v1::File& file) {
  return json{{"object", "file"},
              {"id", file.id()},
              {"bytes", file.size_bytes()},
              {"created_at", Seconds(file.create_time())},
              {"filename", file.filename()},
              {"purpose", "fine-tune"},
              {"status", "processed"},
              {"status_details", nullptr}};
}

namespace {
// The job's method as OpenAI shows it: supervised, or dpo with its beta
// (ftune's ORPO has no OpenAI name: "supervised"; the job's objective is in
// GET .../jobs/{id}'s spec through gRPC).
json MethodJson(const v1::JobSpec& spec, json hp) {
  if (spec.objective() == v1::TRAINING_OBJECTIVE_DPO) {
    hp["beta"] = spec.preference().beta();
    return {{"type", "dpo"}, {"dpo", {{"hyperparameters", hp}}}};
  }
  return {{"type", "supervised"}, {"supervised", {{"hyperparameters", hp}}}};
}
}  // namespace

json JobJson(const v1::Job& job) {
  const v1::JobSpec& spec = job.spec();
  const v1::Hyperparameters& h = spec.hyperparameters();
  json hp = json::object();
  if (h.has_epochs()) {
    hp["n_epochs"] = h.epochs();
  } else {
    hp["n_epochs"] = "auto";  // A max_steps job (ftune.hyperparameters).
  }
  hp["batch_size"] = h.batch_size();
  hp["learning_rate_multiplier"] =
      h.learning_rate() / contract::defaults::kLearningRate;
  json error = nullptr;
  if (job.state() == v1::JOB_STATE_FAILED) {
    std::string code = v1::ErrorReason_Name(job.error().reason());
    absl::string_view view = code;
    absl::ConsumePrefix(&view, "ERROR_REASON_");
    error = json{{"code", absl::AsciiStrToLower(view)},
                 {"message", job.error().message()},
                 {"param", nullptr}};
  }
  json estimated_finish = nullptr;
  if (job.state() == v1::JOB_STATE_RUNNING && job.progress().has_eta()) {
    estimated_finish =
        Seconds(job.update_time()) + job.progress().eta().seconds();
  }
  json metadata = nullptr;
  if (!spec.labels().empty()) {
    metadata = json::object();
    for (const auto& [k, v] : spec.labels()) metadata[k] = v;
  }
  const bool done = job.state() == v1::JOB_STATE_SUCCEEDED ||
                    job.state() == v1::JOB_STATE_FAILED ||
                    job.state() == v1::JOB_STATE_CANCELLED;
  return json{
      {"object", "fine_tuning.job"},
      {"id", job.id()},
      {"created_at", Seconds(job.create_time())},
      {"finished_at", done ? TimeOrNull(job.end_time()) : json(nullptr)},
      {"model", spec.model()},
      // A full fine-tune's model (usable as "model" of later jobs), else
      // the adapter's name.
      {"fine_tuned_model",
       StringOrNull(job.fine_tuned_model().empty() ? job.adapter().name()
                                                   : job.fine_tuned_model())},
      {"organization_id", job.tenant_id()},
      {"result_files", json::array()},
      {"status", JobStatusName(job.state())},
      {"training_file", spec.training_file()},
      {"validation_file", StringOrNull(spec.validation_file())},
      {"hyperparameters", hp},
      {"trained_tokens", job.state() == v1::JOB_STATE_SUCCEEDED
                             ? json(job.progress().tokens_processed())
                             : json(nullptr)},
      {"error", error},
      {"user_provided_suffix", StringOrNull(spec.suffix())},
      {"seed", h.seed()},
      {"estimated_finish", estimated_finish},
      {"integrations", json::array()},
      {"metadata", metadata},
      {"method", MethodJson(spec, hp)},
      {"ftune",
       {{"state", v1::JobState_Name(job.state())},
        {"attempt", job.attempt()},
        {"step", job.progress().step()},
        {"total_steps", job.progress().total_steps()},
        {"queue_position", job.queue_position()},
        {"pause_requested", job.pause_requested()}}},
  };
}

json EventJson(const std::string& job_id, const v1::JobEvent& event) {
  json data = {{"ftune_type", EventTypeName(event.type())},
               {"attempt", event.attempt()}};
  if (event.step() != 0) data["step"] = event.step();
  if (event.to_state() != v1::JOB_STATE_UNSPECIFIED) {
    data["status"] = JobStatusName(event.to_state());
  }
  return json{{"object", "fine_tuning.job.event"},
              {"id", absl::StrCat("ftevent-", job_id, "-", event.sequence())},
              {"created_at", Seconds(event.time())},
              {"level", Level(event)},
              {"message", event.message()},
              {"data", data},
              {"type", "message"}};
}

json MetricEventJson(const std::string& job_id, const v1::MetricPoint& point,
                     int64_t total_steps) {
  json data = {{"step", point.step()},
               {"epoch", point.epoch()},
               {"learning_rate", point.learning_rate()},
               {"total_steps", total_steps}};
  std::string message = absl::StrCat("Step ", point.step());
  if (total_steps > 0) absl::StrAppend(&message, "/", total_steps);
  if (point.has_train_loss()) {
    data["train_loss"] = point.train_loss();
    absl::StrAppend(&message, ": training loss=", point.train_loss());
  }
  if (point.has_eval_loss()) {
    data["valid_loss"] = point.eval_loss();
    absl::StrAppend(&message, point.has_train_loss() ? ", " : ": ",
                    "validation loss=", point.eval_loss());
  }
  // ftune's task metrics (no OpenAI counterpart): full_valid_* in OpenAI's
  // spelling would promise its semantics, so they keep ftune's names.
  if (point.has_eval_task()) {
    const v1::TaskMetrics& t = point.eval_task();
    data["eval_exact_match"] = t.exact_match();
    data["eval_normalized_match"] = t.normalized_match();
    data["eval_token_f1"] = t.token_f1();
    if (t.has_pattern_match()) data["eval_pattern_match"] = t.pattern_match();
    absl::StrAppend(&message, ", exact match=", t.exact_match());
  }
  return json{{"object", "fine_tuning.job.event"},
              {"id", absl::StrCat("ftevent-", job_id, "-", point.sequence())},
              {"created_at", Seconds(point.time())},
              {"level", "info"},
              {"message", message},
              {"data", data},
              {"type", "metrics"}};
}

absl::StatusOr<int64_t> EventSequence(const std::string& job_id,
                                      const std::string& event_id) {
  absl::string_view view = event_id;
  int64_t sequence = 0;
  if (!absl::ConsumePrefix(&view, absl::StrCat("ftevent-", job_id, "-")) ||
      !absl::SimpleAtoi(view, &sequence) || sequence < 0) {
    return InvalidParam("after",
                        absl::StrCat("after: \"", event_id,
                                     "\" is not an event id of job ", job_id));
  }
  return sequence;
}

std::string CheckpointId(const std::string& job_id,
                         const v1::Checkpoint& checkpoint) {
  return absl::StrCat("ftckpt-", job_id, "-", checkpoint.step(), "-",
                      checkpoint.attempt());
}

json CheckpointJson(const v1::Job& job, const v1::Checkpoint& checkpoint) {
  json metrics = {{"step", checkpoint.step()}, {"epoch", checkpoint.epoch()}};
  if (checkpoint.has_eval_loss()) {
    metrics["valid_loss"] = checkpoint.eval_loss();
  }
  return json{
      {"object", "fine_tuning.job.checkpoint"},
      {"id", CheckpointId(job.id(), checkpoint)},
      {"created_at", Seconds(checkpoint.create_time())},
      {"fine_tuned_model_checkpoint",
       absl::StrCat(job.spec().model(), ":", job.id(), ":ckpt-step-",
                    checkpoint.step())},
      {"step_number", checkpoint.step()},
      {"metrics", metrics},
      {"fine_tuning_job_id", job.id()},
  };
}

}  // namespace ftune::server::http
