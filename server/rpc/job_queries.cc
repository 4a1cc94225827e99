#include "server/rpc/job_queries.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/quote.h"
#include "common/status.h"
#include "server/engine/job_engine.h"
#include "server/rpc/convert.h"
#include "server/rpc/pagination.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {
namespace {

absl::StatusOr<std::map<std::string, std::string>> ParseLabelSelector(
    const std::string& selector) {
  std::map<std::string, std::string> out;
  if (absl::StripAsciiWhitespace(selector).empty()) return out;
  for (absl::string_view term : absl::StrSplit(selector, ',')) {
    term = absl::StripAsciiWhitespace(term);
    const size_t eq = term.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return InvalidField(
          "label_selector",
          absl::StrCat("label_selector: term ", QuoteValue(term),
                       " is not key=value (e.g. team=search,stage=prod)"));
    }
    std::string key(absl::StripAsciiWhitespace(term.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(term.substr(eq + 1)));
    auto [it, inserted] = out.emplace(key, value);
    if (!inserted && it->second != value) {
      return InvalidField("label_selector",
                          absl::StrCat("label_selector: key ", QuoteValue(key),
                                       " is given twice with other values"));
    }
  }
  return out;
}

// A page cursor of two numbers, "a:b" (empty: the first page).
absl::StatusOr<std::optional<std::pair<int64_t, int64_t>>> ParsePairCursor(
    const std::string& cursor) {
  if (cursor.empty()) return std::nullopt;
  std::pair<int64_t, int64_t> key;
  std::vector<std::string> parts = absl::StrSplit(cursor, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &key.first) ||
      !absl::SimpleAtoi(parts[1], &key.second)) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  return key;
}

}  // namespace

absl::Status ListJobs(store::Store& store, const std::string& tenant,
                      const v1::ListJobsRequest& request,
                      v1::ListJobsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size(),
                                                        store::kDefaultPageSize,
                                                        store::kMaxPageSize));
  store::JobFilter filter;
  for (int i = 0; i < request.states_size(); ++i) {
    std::optional<core::JobState> s = JobStateFromProto(request.states(i));
    if (!s) {
      return InvalidField(absl::StrCat("states[", i, "]"),
                          absl::StrCat("states[", i, "]: not a job state"));
    }
    filter.states.push_back(*s);
  }
  std::sort(filter.states.begin(), filter.states.end());
  filter.states.erase(std::unique(filter.states.begin(), filter.states.end()),
                      filter.states.end());
  FTUNE_ASSIGN_OR_RETURN(filter.labels,
                         ParseLabelSelector(request.label_selector()));
  filter.include_try_jobs = request.include_try_jobs();
  // Canonical text of the filters the token is bound to.
  std::string binding =
      request.include_try_jobs() ? "jobs;try;states=" : "jobs;states=";
  for (core::JobState s : filter.states) {
    absl::StrAppend(&binding, static_cast<int>(s), ",");
  }
  absl::StrAppend(&binding, ";labels=");
  for (const auto& [k, v] : filter.labels) {
    absl::StrAppend(&binding, k.size(), ":", k, "=", v.size(), ":", v, ",");
  }
  FTUNE_ASSIGN_OR_RETURN(std::string store_token,
                         DecodePageToken(request.page_token(), binding));
  absl::StatusOr<store::Page<core::Job>> page =
      store.ListJobs(tenant, filter, page_size, store_token);
  if (absl::IsInvalidArgument(page.status())) {
    return InvalidField("page_token",
                        absl::StrCat("page_token: ", page.status().message()));
  }
  FTUNE_RETURN_IF_ERROR(page.status());
  for (const core::Job& job : page->items) {
    *response->add_jobs() = JobToProto(job);
  }
  if (!page->next_page_token.empty()) {
    response->set_next_page_token(
        EncodePageToken(binding, page->next_page_token));
  }
  return absl::OkStatus();
}

absl::Status ListJobEvents(store::Store& store, engine::JobEngine& jobs,
                           const std::string& tenant,
                           const v1::ListJobEventsRequest& request,
                           v1::ListJobEventsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 100, 1000));
  if (request.after_sequence() < 0) {
    return InvalidField("after_sequence", "after_sequence: must be >= 0");
  }
  std::vector<int> types;
  for (int i = 0; i < request.types_size(); ++i) {
    if (request.types(i) == v1::JOB_EVENT_TYPE_UNSPECIFIED ||
        !v1::JobEventType_IsValid(request.types(i))) {
      return InvalidField(absl::StrCat("types[", i, "]"),
                          absl::StrCat("types[", i, "]: not an event type"));
    }
    types.push_back(request.types(i));
  }
  std::sort(types.begin(), types.end());
  const std::string binding =
      absl::StrCat("events;", request.job_id(), ";", absl::StrJoin(types, ","));
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         SequenceCursor(cursor, request.after_sequence()));
  FTUNE_RETURN_IF_ERROR(jobs.GetJob(tenant, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::string next,
      SequencePage(
          after, page_size, /*max_batch=*/page_size, binding,
          [&](int64_t from, int limit) {
            return store.ListJobEvents(tenant, request.job_id(), from, limit);
          },
          [&](const core::JobEvent& e) -> std::optional<v1::JobEvent> {
            v1::JobEvent pe = JobEventToProto(e);
            if (!types.empty() &&
                !std::binary_search(types.begin(), types.end(), pe.type())) {
              return std::nullopt;
            }
            return pe;
          },
          response->mutable_events()));
  response->set_next_page_token(next);
  return absl::OkStatus();
}

absl::Status ListJobMetrics(store::Store& store, engine::JobEngine& jobs,
                            const std::string& tenant,
                            const v1::ListJobMetricsRequest& request,
                            v1::ListJobMetricsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 1000, 10000));
  if (request.after_sequence() < 0) {
    return InvalidField("after_sequence", "after_sequence: must be >= 0");
  }
  if (request.min_step() < 0) {
    return InvalidField("min_step", "min_step: must be >= 0");
  }
  if (request.max_step() < 0) {
    return InvalidField("max_step", "max_step: must be >= 0");
  }
  if (request.max_step() != 0 && request.min_step() > request.max_step()) {
    return InvalidField("min_step",
                        absl::StrCat("min_step ", request.min_step(),
                                     " > max_step ", request.max_step()));
  }
  if (request.attempt() < 0) {
    return InvalidField("attempt", "attempt: must be >= 0");
  }
  const std::string binding =
      absl::StrCat("metrics;", request.job_id(), ";", request.min_step(), ";",
                   request.max_step(), ";", request.attempt());
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         SequenceCursor(cursor, request.after_sequence()));
  FTUNE_RETURN_IF_ERROR(jobs.GetJob(tenant, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::string next,
      SequencePage(
          after, page_size, /*max_batch=*/1000, binding,
          [&](int64_t from, int limit) {
            return store.ListJobMetrics(tenant, request.job_id(), from, limit);
          },
          [&](const core::MetricPoint& m) -> std::optional<v1::MetricPoint> {
            if (m.step < request.min_step()) return std::nullopt;
            if (request.max_step() != 0 && m.step > request.max_step()) {
              return std::nullopt;
            }
            if (request.attempt() != 0 && m.attempt != request.attempt()) {
              return std::nullopt;
            }
            return MetricPointToProto(m);
          },
          response->mutable_metrics()));
  response->set_next_page_token(next);
  return absl::OkStatus();
}

absl::Status ListCheckpoints(store::Store& store, engine::JobEngine& jobs,
                             const std::string& tenant,
                             const v1::ListCheckpointsRequest& request,
                             v1::ListCheckpointsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 100, 1000));
  const std::string binding = absl::StrCat("checkpoints;", request.job_id());
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  // Cursor "step:attempt" of the last checkpoint returned.
  using Key = std::pair<int64_t, int64_t>;
  FTUNE_ASSIGN_OR_RETURN(std::optional<Key> after, ParsePairCursor(cursor));
  FTUNE_RETURN_IF_ERROR(jobs.GetJob(tenant, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(std::vector<core::Checkpoint> all,
                         store.ListCheckpoints(tenant, request.job_id()));
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.step, a.attempt) <
           std::make_pair(b.step, b.attempt);
  });
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<Key> next,
      KeysetPage(
          all, after, page_size,
          [](const core::Checkpoint& c) { return Key(c.step, c.attempt); },
          [](const core::Checkpoint& c)
              -> absl::StatusOr<std::optional<v1::Checkpoint>> {
            return CheckpointToProto(c);
          },
          response->mutable_checkpoints()));
  if (next) {
    response->set_next_page_token(
        EncodePageToken(binding, absl::StrCat(next->first, ":", next->second)));
  }
  return absl::OkStatus();
}

absl::Status ListJobSamples(store::Store& store, engine::JobEngine& jobs,
                            const std::string& tenant,
                            const v1::ListJobSamplesRequest& request,
                            v1::ListJobSamplesResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 100, 1000));
  std::optional<int64_t> step;
  if (request.has_step()) {
    if (request.step() < 0) {
      return InvalidField("step", "step: must be >= 0");
    }
    step = request.step();
  }
  const std::string binding =
      absl::StrCat("samples;", request.job_id(), ";",
                   step ? absl::StrCat(*step) : std::string("*"));
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  // Cursor "step:index" of the last sample returned.
  FTUNE_ASSIGN_OR_RETURN(auto after, ParsePairCursor(cursor));
  FTUNE_RETURN_IF_ERROR(jobs.GetJob(tenant, request.job_id()).status());
  // One more than the page: whether there is a next page.
  FTUNE_ASSIGN_OR_RETURN(std::vector<core::JobSample> samples,
                         store.ListJobSamples(tenant, request.job_id(), step,
                                              after, page_size + 1));
  const bool more = static_cast<int>(samples.size()) > page_size;
  if (more) samples.resize(page_size);
  for (const core::JobSample& s : samples) {
    *response->add_samples() = JobSampleToProto(s);
  }
  if (more) {
    response->set_next_page_token(EncodePageToken(
        binding, absl::StrCat(samples.back().step, ":", samples.back().index)));
  }
  return absl::OkStatus();
}

}  // namespace ftune::server::rpc
