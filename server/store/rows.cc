#include "server/store/rows.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "server/store/store.h"

namespace ftune::store::internal {

using nlohmann::json;

std::string EncodeStringMap(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j.dump();
}

absl::StatusOr<std::map<std::string, std::string>> DecodeStringMap(
    const std::string& text, absl::string_view what) {
  std::map<std::string, std::string> out;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        absl::StrCat("stored ", what, " is not a JSON object: ", text));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) {
      return absl::DataLossError(absl::StrCat("stored ", what, " value of '",
                                              it.key(), "' is not a string"));
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

std::string EncodeIntList(const std::vector<int32_t>& v) {
  return absl::StrJoin(v, ",");
}

absl::StatusOr<std::vector<int32_t>> DecodeIntList(const std::string& text) {
  std::vector<int32_t> out;
  if (text.empty()) return out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::DataLossError(
          absl::StrCat("stored integer list is malformed: \"", text, "\""));
    }
    out.push_back(v);
  }
  return out;
}

std::string EncodeAdapterDetail(const core::Adapter& a) {
  json files = json::array();
  for (const core::AdapterFile& f : a.files) {
    files.push_back(
        {{"path", f.path}, {"size", f.size_bytes}, {"sha256", f.sha256}});
  }
  return json{{"step", a.step},
              {"publish_time_us", a.publish_time == absl::InfinitePast()
                                      ? int64_t{0}
                                      : absl::ToUnixMicros(a.publish_time)},
              {"files", files}}
      .dump();
}

absl::Status DecodeAdapterDetail(const std::string& text, core::Adapter* a) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        absl::StrCat("stored adapter detail is not a JSON object: ", text));
  }
  try {
    a->step = j.value("step", int64_t{0});
    const int64_t us = j.value("publish_time_us", int64_t{0});
    a->publish_time = us == 0 ? absl::InfinitePast() : absl::FromUnixMicros(us);
    a->files.clear();
    for (const json& f : j.value("files", json::array())) {
      a->files.push_back({f.at("path").get<std::string>(),
                          f.at("size").get<int64_t>(),
                          f.at("sha256").get<std::string>()});
    }
  } catch (const json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("stored adapter detail is malformed: ", e.what()));
  }
  return absl::OkStatus();
}

namespace {

template <typename F>
void EachPreferenceField(contract::PreferenceMetrics& m, F f) {
  f("rewards_chosen", m.rewards_chosen);
  f("rewards_rejected", m.rewards_rejected);
  f("reward_accuracy", m.reward_accuracy);
  f("reward_margin", m.reward_margin);
  f("logps_chosen", m.logps_chosen);
  f("logps_rejected", m.logps_rejected);
}

// Task metrics as stored: {"examples", "exact_match", "normalized_match",
// "token_f1", "pattern_match" (only with a pattern)}; a non-finite share is
// null.
json TaskMetricsJson(const contract::TaskMetrics& t) {
  auto num = [](double v) {
    return std::isfinite(v) ? json(v) : json(nullptr);
  };
  json o = {{"examples", t.examples},
            {"exact_match", num(t.exact_match)},
            {"normalized_match", num(t.normalized_match)},
            {"token_f1", num(t.token_f1)}};
  if (t.pattern_match) o["pattern_match"] = num(*t.pattern_match);
  return o;
}

// `parent`'s "eval_task" object; unset when absent. A null or missing share
// reads as NaN.
std::optional<contract::TaskMetrics> TaskMetricsFromJson(const json& parent) {
  auto it = parent.find("eval_task");
  if (it == parent.end() || !it->is_object()) return std::nullopt;
  auto number = [&](const char* k) {
    auto f = it->find(k);
    return f != it->end() && f->is_number()
               ? f->get<double>()
               : std::numeric_limits<double>::quiet_NaN();
  };
  contract::TaskMetrics t;
  if (auto e = it->find("examples"); e != it->end() && e->is_number_integer()) {
    t.examples = e->get<int64_t>();
  }
  t.exact_match = number("exact_match");
  t.normalized_match = number("normalized_match");
  t.token_f1 = number("token_f1");
  if (it->contains("pattern_match")) t.pattern_match = number("pattern_match");
  return t;
}

}  // namespace

std::string EncodePointPreference(const core::MetricPoint& p) {
  if (!p.preference && !p.eval_preference && !p.eval_task) return "";
  json j = json::object();
  for (auto [key, value] :
       {std::pair<const char*,
                  const std::optional<contract::PreferenceMetrics>*>{
            "train", &p.preference},
        {"eval", &p.eval_preference}}) {
    if (!*value) continue;
    contract::PreferenceMetrics m = **value;
    json o = json::object();
    EachPreferenceField(m, [&](const char* k, double v) {
      o[k] = std::isfinite(v) ? json(v) : json(nullptr);
    });
    j[key] = o;
  }
  if (p.eval_task) j["eval_task"] = TaskMetricsJson(*p.eval_task);
  return j.dump();
}

absl::Status DecodePointPreference(const std::string& text,
                                   core::MetricPoint* p) {
  if (text.empty()) return absl::OkStatus();
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        "stored job_metrics.preference is not a JSON object");
  }
  for (auto [key, value] :
       {std::pair<const char*, std::optional<contract::PreferenceMetrics>*>{
            "train", &p->preference},
        {"eval", &p->eval_preference}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_object()) continue;
    contract::PreferenceMetrics m;
    EachPreferenceField(m, [&](const char* k, double& v) {
      auto f = it->find(k);
      v = f != it->end() && f->is_number()
              ? f->get<double>()
              : std::numeric_limits<double>::quiet_NaN();
    });
    *value = m;
  }
  p->eval_task = TaskMetricsFromJson(j);
  return absl::OkStatus();
}

std::string EncodeMetricsSummary(const core::JobMetricsSummary& m) {
  json j = json::object();
  if (m.train) {
    const core::MetricPoint& p = *m.train;
    j["train"] = {{"sequence", p.sequence},
                  {"time_us", absl::ToUnixMicros(p.time)},
                  {"attempt", p.attempt},
                  {"step", p.step},
                  {"epoch", p.epoch},
                  {"train_loss", p.train_loss.value_or(0)},
                  {"lr", p.lr},
                  {"grad_norm", p.grad_norm},
                  {"tokens_per_s", p.tokens_per_s},
                  {"peak_memory_bytes", p.peak_memory_bytes}};
  }
  if (m.eval_loss) {
    j["eval_loss"] = *m.eval_loss;
    j["eval_step"] = m.eval_step;
    if (m.eval_task) j["eval_task"] = TaskMetricsJson(*m.eval_task);
  }
  if (m.best_eval_loss) {
    j["best_eval_loss"] = *m.best_eval_loss;
    j["best_eval_step"] = m.best_eval_step;
  }
  j["peak_memory_bytes"] = m.peak_memory_bytes;
  if (m.predicted_peak_memory_bytes > 0)
    j["predicted_peak_memory_bytes"] = m.predicted_peak_memory_bytes;
  if (m.tensor_peak_memory_bytes > 0)
    j["tensor_peak_memory_bytes"] = m.tensor_peak_memory_bytes;
  return j.dump();
}

absl::StatusOr<core::JobMetricsSummary> DecodeMetricsSummary(
    const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError("stored latest_metrics is not a JSON object");
  }
  // A missing or null key is an unset value.
  auto number = [](const json& o, const char* key) -> std::optional<double> {
    auto it = o.find(key);
    if (it == o.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  };
  auto integer = [](const json& o, const char* key) -> int64_t {
    auto it = o.find(key);
    return it != o.end() && it->is_number() ? it->get<int64_t>() : 0;
  };
  core::JobMetricsSummary m;
  auto train = j.find("train");
  if (train != j.end() && train->is_object()) {
    core::MetricPoint p;
    p.sequence = integer(*train, "sequence");
    p.time = absl::FromUnixMicros(integer(*train, "time_us"));
    p.attempt = integer(*train, "attempt");
    p.step = integer(*train, "step");
    p.epoch = number(*train, "epoch").value_or(0);
    p.train_loss = number(*train, "train_loss");
    p.lr = number(*train, "lr").value_or(0);
    p.grad_norm = number(*train, "grad_norm").value_or(0);
    p.tokens_per_s = number(*train, "tokens_per_s").value_or(0);
    p.peak_memory_bytes = integer(*train, "peak_memory_bytes");
    if (p.train_loss) m.train = std::move(p);
  }
  m.eval_loss = number(j, "eval_loss");
  if (m.eval_loss) {
    m.eval_step = integer(j, "eval_step");
    m.eval_task = TaskMetricsFromJson(j);
  }
  m.best_eval_loss = number(j, "best_eval_loss");
  if (m.best_eval_loss) m.best_eval_step = integer(j, "best_eval_step");
  m.peak_memory_bytes = integer(j, "peak_memory_bytes");
  m.predicted_peak_memory_bytes = integer(j, "predicted_peak_memory_bytes");
  m.tensor_peak_memory_bytes = integer(j, "tensor_peak_memory_bytes");
  return m;
}

std::string EncodePageToken(absl::string_view kind, int64_t seq) {
  return absl::WebSafeBase64Escape(absl::StrCat(kind, ":", seq));
}

absl::StatusOr<int64_t> DecodePageToken(absl::string_view kind,
                                        absl::string_view token) {
  if (token.empty()) return 0;
  std::string raw;
  int64_t seq = 0;
  const std::string prefix = absl::StrCat(kind, ":");
  if (!absl::WebSafeBase64Unescape(token, &raw) ||
      raw.compare(0, prefix.size(), prefix) != 0 ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(prefix.size()), &seq) ||
      seq <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token '", token, "' is not a token returned by this list call"));
  }
  return seq;
}

int ClampPageSize(int page_size) {
  if (page_size <= 0) return kDefaultPageSize;
  return page_size > kMaxPageSize ? kMaxPageSize : page_size;
}

absl::Status CheckTenantArg(absl::string_view tenant_id) {
  if (tenant_id.empty()) {
    return absl::InvalidArgumentError(
        "tenant_id is empty (pass the caller's tenant or kAnyTenant)");
  }
  return absl::OkStatus();
}

bool TenantSees(absl::string_view tenant_id, absl::string_view owner) {
  return tenant_id == kAnyTenant || tenant_id == owner;
}

std::string JobColumns(bool with_spec) {
  return absl::StrCat(
      "id, tenant_id, state, attempt, restart_count, request_id, priority, "
      "gpus, memory_bytes, gpu_type, cpu_threads, max_restarts, labels, "
      "model, training_file_id, validation_file_id, create_time, "
      "update_time, start_time, end_time, error_reason, error_message, "
      "error_retryable, progress_step, progress_total_steps, progress_epoch, "
      "progress_tokens, latest_metrics, worker_id, lease_expiry, "
      "checkpoint_step, checkpoint_attempt, checkpoint_path, checkpoint_time, "
      "adapter_path, adapter_manifest_sha256, last_sequence, adapter_detail, "
      "trainer_requirement, kind",
      with_spec ? ", spec" : "");
}

int JobColumnCount(bool with_spec) {
  const std::string cols = JobColumns(with_spec);
  return static_cast<int>(std::count(cols.begin(), cols.end(), ',')) + 1;
}

absl::StatusOr<core::Job> ReadJobRow(const Statement& st, bool with_spec) {
  core::Job j;
  j.id = st.ColumnText(0);
  j.tenant_id = st.ColumnText(1);
  FTUNE_ASSIGN_OR_RETURN(j.state, core::JobStateFromInt(st.ColumnInt(2)));
  j.attempt = st.ColumnInt(3);
  j.restart_count = st.ColumnInt(4);
  j.request_id = st.ColumnText(5);
  j.priority = static_cast<int32_t>(st.ColumnInt(6));
  j.resources.gpus = static_cast<int32_t>(st.ColumnInt(7));
  j.resources.memory_bytes = st.ColumnInt(8);
  j.resources.gpu_type = st.ColumnText(9);
  j.resources.cpu_threads = static_cast<int32_t>(st.ColumnInt(10));
  j.max_restarts = static_cast<int32_t>(st.ColumnInt(11));
  FTUNE_ASSIGN_OR_RETURN(j.labels,
                         DecodeStringMap(st.ColumnText(12), "job labels"));
  j.model = st.ColumnText(13);
  j.training_file_id = st.ColumnText(14);
  j.validation_file_id = st.ColumnText(15);
  j.create_time = st.ColumnTime(16);
  j.update_time = st.ColumnTime(17);
  j.start_time = st.ColumnTime(18);
  j.end_time = st.ColumnTime(19);
  j.error.reason = static_cast<core::JobErrorReason>(st.ColumnInt(20));
  j.error.message = st.ColumnText(21);
  j.error.retryable = st.ColumnInt(22) != 0;
  j.progress.step = st.ColumnInt(23);
  j.progress.total_steps = st.ColumnInt(24);
  j.progress.epoch = st.ColumnDouble(25);
  j.progress.tokens = st.ColumnInt(26);
  if (!st.ColumnIsNull(27)) {
    FTUNE_ASSIGN_OR_RETURN(j.metrics, DecodeMetricsSummary(st.ColumnText(27)));
    if (j.metrics.train) j.metrics.train->job_id = j.id;
  }
  j.worker_id = st.ColumnText(28);
  j.lease_expiry = st.ColumnTime(29);
  if (!st.ColumnIsNull(30)) {
    core::Checkpoint c;
    c.job_id = j.id;
    c.step = st.ColumnInt(30);
    c.attempt = st.ColumnInt(31);
    c.path = st.ColumnText(32);
    c.create_time = st.ColumnTime(33);
    j.last_checkpoint = std::move(c);
  }
  j.adapter.path = st.ColumnText(34);
  j.adapter.manifest_sha256 = st.ColumnText(35);
  j.last_sequence = st.ColumnInt(36);
  FTUNE_RETURN_IF_ERROR(DecodeAdapterDetail(st.ColumnText(37), &j.adapter));
  // '' = created before the requirement was recorded: any trainer.
  if (const std::string need = st.ColumnText(38); !need.empty()) {
    absl::StatusOr<contract::TrainerRequirement> r =
        contract::ParseRequirement(need);
    if (!r.ok()) {
      return absl::DataLossError(
          absl::StrCat("job ", j.id, ": ", r.status().message()));
    }
    j.resources.trainer = *std::move(r);
  }
  j.kind =
      st.ColumnText(39) == "try" ? core::JobKind::kTry : core::JobKind::kTrain;
  if (with_spec) j.spec = st.ColumnBlob(40);
  return j;
}

absl::StatusOr<core::Job> LoadJob(Connection& conn, absl::string_view job_id,
                                  bool with_spec) {
  FTUNE_ASSIGN_OR_RETURN(
      Statement st, conn.Prepare(absl::StrCat("SELECT ", JobColumns(with_spec),
                                              " FROM jobs WHERE id = ?")));
  st.Bind(1, job_id);
  FTUNE_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  return ReadJobRow(st, with_spec);
}

}  // namespace ftune::store::internal
