#include "common/contract/progress.h"

#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ftune::contract {
namespace {

using nlohmann::json;

// The fields of each event, listed once: the writer and the reader below
// both walk these lists.
template <typename V>
void Fields(V& v, DataEvent& e) {
  v("split", e.split);
  v("examples", e.examples);
  v("rows", e.rows);
  v("tokens", e.tokens);
  v("trained_tokens", e.trained_tokens);
  v("truncated", e.truncated);
  v("dropped_overlength", e.dropped_overlength);
  v("dropped_no_target", e.dropped_no_target);
  v(e.description);
}
template <typename V>
void Fields(V& v, ResumedEvent& e) {
  v("step", e.step);
  v("path", e.path);
}
template <typename V>
void Fields(V& v, StartEvent& e) {
  v("total_steps", e.total_steps);
  v("train_rows", e.train_rows);
  v("train_examples", e.train_examples);
  v("validation_rows", e.validation_rows);
  v("trainable_parameters", e.trainable_parameters);
  v("threads", e.threads);
}
template <typename V>
void Fields(V& v, MetricsEvent& e) {
  v("step", e.step);
  v("total_steps", e.total_steps);
  v("epoch", e.epoch);
  v("loss", e.loss);
  v("lr", e.lr);
  v("grad_norm", e.grad_norm);
  v("tokens_per_s", e.tokens_per_s);
  v("peak_memory_bytes", e.peak_memory_bytes);
  v("preference", e.preference);
  v("predicted_peak_memory_bytes", e.predicted_peak_memory_bytes);
  v("tensor_peak_memory_bytes", e.tensor_peak_memory_bytes);
  v("padding_share", e.padding_share);
}
template <typename V>
void Fields(V& v, OomRetryEvent& e) {
  v("step", e.step);
  v("micro_batch_size", e.micro_batch_size);
  v("gradient_accumulation_steps", e.gradient_accumulation_steps);
  v("message", e.message);
}
template <typename V>
void Fields(V& v, EvalEvent& e) {
  v("step", e.step);
  v("eval_loss", e.eval_loss);
  v("best_eval_loss", e.best_eval_loss);
  v("best_step", e.best_step);
  v("preference", e.preference);
  v("task", e.task);
}
template <typename V>
void Fields(V& v, EarlyStopEvent& e) {
  v("step", e.step);
  v("best_step", e.best_step);
}
template <typename V>
void Fields(V& v, CheckpointEvent& e) {
  v("step", e.step);
  v("path", e.path);
}
template <typename V>
void Fields(V& v, InterruptedEvent& e) {
  v("step", e.step);
  v("path", e.path);
}
template <typename V>
void Fields(V& v, DoneEvent& e) {
  v("step", e.step);
  v("output_dir", e.output_dir);
  v("final_loss", e.final_loss);
  v("best_eval_loss", e.best_eval_loss);
}
template <typename V>
void Fields(V& v, ErrorEvent& e) {
  v("reason", e.reason);
  v("message", e.message);
}
template <typename V>
void Fields(V& v, SamplesEvent& e) {
  v("step", e.step);
  v("samples", e.samples);
}
template <typename V>
void Fields(V&, UnknownEvent&) {}

template <typename F>
void EachPreferenceField(PreferenceMetrics& m, F f) {
  f("rewards_chosen", m.rewards_chosen);
  f("rewards_rejected", m.rewards_rejected);
  f("reward_accuracy", m.reward_accuracy);
  f("reward_margin", m.reward_margin);
  f("logps_chosen", m.logps_chosen);
  f("logps_rejected", m.logps_rejected);
}

// Names in the order of ProgressEvent's alternatives.
constexpr std::array<const char*, std::variant_size_v<ProgressEvent>> kTypes = {
    "data",  "resumed",    "start",      "metrics",     "oom_retry",
    "eval",  "early_stop", "checkpoint", "interrupted", "done",
    "error", "samples",    "?"};

class Writer {
 public:
  explicit Writer(json& j) : j_(j) {}
  void operator()(const char* key, const std::string& v) { j_[key] = v; }
  void operator()(const char* key, int64_t v) { j_[key] = v; }
  void operator()(const char* key, double v) {
    j_[key] = std::isfinite(v) ? json(v) : json(nullptr);
  }
  void operator()(const char* key, const std::optional<double>& v) {
    j_[key] = v ? json(*v) : json(nullptr);
  }
  void operator()(const char* key, const std::optional<PreferenceMetrics>& v) {
    if (!v) return;
    json o = json::object();
    PreferenceMetrics m = *v;
    EachPreferenceField(m, [&](const char* k, double x) {
      o[k] = std::isfinite(x) ? json(x) : json(nullptr);
    });
    j_[key] = o;
  }
  void operator()(const char* key, const std::optional<TaskMetrics>& v) {
    if (!v) return;
    auto num = [](double x) {
      return std::isfinite(x) ? json(x) : json(nullptr);
    };
    json o = {{"examples", v->examples},
              {"exact_match", num(v->exact_match)},
              {"normalized_match", num(v->normalized_match)},
              {"token_f1", num(v->token_f1)}};
    if (v->pattern_match) o["pattern_match"] = num(*v->pattern_match);
    j_[key] = std::move(o);
  }
  void operator()(const char* key, const std::vector<SampleText>& v) {
    json a = json::array();
    for (const SampleText& s : v) {
      json o = {{"prompt", s.prompt},
                {"completion", s.completion},
                {"finish_reason", s.finish_reason}};
      if (s.expected) o["expected"] = *s.expected;
      a.push_back(std::move(o));
    }
    j_[key] = std::move(a);
  }
  void operator()(const std::map<std::string, std::string>& extra) {
    for (const auto& [k, v] : extra) {
      if (!j_.contains(k)) j_[k] = v;
    }
  }

 private:
  json& j_;
};

class Reader {
 public:
  explicit Reader(const json& j) : j_(j) {}
  void operator()(const char* key, std::string& v) {
    if (const json* x = Find(key); x != nullptr) {
      if (x->is_string()) {
        v = x->get<std::string>();
      } else {
        Fail(key, "a string");
      }
    }
  }
  void operator()(const char* key, int64_t& v) {
    if (const json* x = Find(key); x != nullptr) {
      if (x->is_number_integer()) {
        v = x->get<int64_t>();
      } else {
        Fail(key, "an integer");
      }
    }
  }
  void operator()(const char* key, double& v) {
    auto it = j_.find(key);
    if (it == j_.end()) return;
    if (it->is_null()) {
      v = std::numeric_limits<double>::quiet_NaN();
    } else if (it->is_number()) {
      v = it->get<double>();
    } else {
      Fail(key, "a number");
    }
  }
  void operator()(const char* key, std::optional<double>& v) {
    if (const json* x = Find(key); x != nullptr) {
      if (x->is_number()) {
        v = x->get<double>();
      } else {
        Fail(key, "a number or null");
      }
    }
  }
  void operator()(const char* key, std::optional<PreferenceMetrics>& v) {
    const json* x = Find(key);
    if (x == nullptr) return;
    if (!x->is_object()) return Fail(key, "an object");
    PreferenceMetrics m;
    EachPreferenceField(m, [&](const char* k, double& out) {
      auto it = x->find(k);
      if (it == x->end()) return;
      if (it->is_null()) {
        out = std::numeric_limits<double>::quiet_NaN();
      } else if (it->is_number()) {
        out = it->get<double>();
      } else {
        Fail(key, "an object of numbers");
      }
    });
    v = m;
  }
  void operator()(const char* key, std::optional<TaskMetrics>& v) {
    const json* x = Find(key);
    if (x == nullptr) return;
    if (!x->is_object()) return Fail(key, "an object");
    TaskMetrics m;
    if (auto it = x->find("examples"); it != x->end()) {
      if (!it->is_number_integer()) return Fail(key, "an integer examples");
      m.examples = it->get<int64_t>();
    }
    for (auto [name, out] :
         {std::pair<const char*, double*>{"exact_match", &m.exact_match},
          {"normalized_match", &m.normalized_match},
          {"token_f1", &m.token_f1}}) {
      auto it = x->find(name);
      if (it == x->end()) continue;
      if (it->is_null()) {
        *out = std::numeric_limits<double>::quiet_NaN();
      } else if (it->is_number()) {
        *out = it->get<double>();
      } else {
        return Fail(key, "an object of numbers");
      }
    }
    if (auto it = x->find("pattern_match"); it != x->end() && !it->is_null()) {
      if (!it->is_number()) return Fail(key, "an object of numbers");
      m.pattern_match = it->get<double>();
    }
    v = m;
  }
  void operator()(const char* key, std::vector<SampleText>& v) {
    const json* x = Find(key);
    if (x == nullptr) return;
    if (!x->is_array()) return Fail(key, "an array");
    for (const json& o : *x) {
      if (!o.is_object()) return Fail(key, "an array of objects");
      SampleText s;
      for (auto [name, out] :
           {std::pair<const char*, std::string*>{"prompt", &s.prompt},
            {"completion", &s.completion},
            {"finish_reason", &s.finish_reason}}) {
        auto it = o.find(name);
        if (it == o.end() || it->is_null()) continue;
        if (!it->is_string()) return Fail(key, "objects of strings");
        *out = it->get<std::string>();
      }
      if (auto it = o.find("expected"); it != o.end() && !it->is_null()) {
        if (!it->is_string()) return Fail(key, "objects of strings");
        s.expected = it->get<std::string>();
      }
      v.push_back(std::move(s));
    }
  }
  // Every other string member of the line.
  void operator()(std::map<std::string, std::string>& extra) {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (it.key() != "type" && it->is_string() && !known_.count(it.key())) {
        extra[it.key()] = it->get<std::string>();
      }
    }
  }
  const absl::Status& status() const { return status_; }

 private:
  const json* Find(const char* key) {
    known_.emplace(key, true);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  void Fail(const char* key, const char* want) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("progress line \"", j_.value("type", ""), "\": \"", key,
                       "\" must be ", want));
    }
  }
  const json& j_;
  std::map<std::string, bool> known_;
  absl::Status status_;
};

template <size_t I = 0>
absl::StatusOr<ProgressEvent> ParseAs(const std::string& type, const json& j) {
  if constexpr (I + 1 == kTypes.size()) {
    return UnknownEvent{type};
  } else {
    if (type != kTypes[I]) return ParseAs<I + 1>(type, j);
    std::variant_alternative_t<I, ProgressEvent> event;
    Reader reader(j);
    Fields(reader, event);
    if (!reader.status().ok()) return reader.status();
    return ProgressEvent(std::move(event));
  }
}

}  // namespace

const char* TypeName(const ProgressEvent& event) {
  if (const auto* u = std::get_if<UnknownEvent>(&event)) {
    return u->type.c_str();
  }
  return kTypes[event.index()];
}

std::string ToJsonLine(const ProgressEvent& event) {
  json j = {{"type", TypeName(event)}};
  Writer writer(j);
  std::visit(
      [&](auto e) {  // a copy: Fields takes the event by reference
        Fields(writer, e);
      },
      event);
  // Invalid UTF-8 (a generated completion cut inside a character) is
  // replaced by U+FFFD rather than failing the line.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<ProgressEvent> ParseProgressLine(absl::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("progress line: not a JSON object");
  }
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) {
    return absl::InvalidArgumentError(
        "progress line: no \"type\" string member");
  }
  return ParseAs(it->get<std::string>(), j);
}

}  // namespace ftune::contract
