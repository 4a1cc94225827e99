// The OpenAI fine-tuning API's objects and errors (docs/openai-compat.md),
// made from and into ftune's own API messages: the translation the HTTP
// front end (server/http/openai_server.h) does between a request body and
// a CreateJobRequest, and between a Job, File, JobEvent, MetricPoint or
// Checkpoint and the JSON object OpenAI's clients expect.
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_HTTP_OPENAI_JSON_H_
#define FTUNE_SERVER_HTTP_OPENAI_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/file.pb.h"
#include "ftune/v1/job.pb.h"
#include "ftune/v1/job_service.pb.h"
#include "nlohmann/json.hpp"

namespace ftune::server::http {

// An error as OpenAI sends it: the HTTP status and
// {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;   // "invalid_request_error", "server_error", ...
  std::string param;  // The request field at fault; "" = null.
  std::string code;   // "" = null.
  // For 429 rate_limit_exceeded: the Retry-After header (0 = none).
  int64_t retry_after_seconds = 0;

  nlohmann::json Body() const;
};

// INVALID_ARGUMENT naming `param` (an OpenAI request path such as
// "method.type"): what the parser and the server refuse before the engine.
absl::Status InvalidParam(std::string param, std::string message);

// The OpenAI request path for an ftune field path ("spec.model" ->
// "model", "spec.hyperparameters.epochs" ->
// "method.supervised.hyperparameters.n_epochs", other "spec.X" ->
// "ftune.X"); other paths are returned as they are.
std::string ParamForField(absl::string_view field);

// The answer for a failed call: the status and its ErrorInfo.field mapped
// (HTTP 400 invalid argument, 401 unauthenticated, 403, 404, 409 conflict,
// 413 a file over the size limit, 429 quota or rate limit (with
// Retry-After), 503 unavailable, 500).
ApiError ErrorFromStatus(const absl::Status& status);

// POST /v1/fine_tuning/jobs: the OpenAI body as a CreateJobRequest.
// INVALID_ARGUMENT naming the param for an unknown field, a value of the
// wrong type or range, an unsupported method (dpo, reinforcement) or
// integrations; ftune's own JobSpec fields come in the "ftune" object
// (proto3 JSON of ftune.v1.JobSpec).
absl::StatusOr<v1::CreateJobRequest> ParseCreateJob(const nlohmann::json& body);

// OpenAI's status for a state: queued, running, paused, succeeded,
// failed, cancelled (CANCELLING shows as running until it ends).
std::string JobStatusName(v1::JobState state);

nlohmann::json FileJson(const v1::File& file);
nlohmann::json JobJson(const v1::Job& job);
// A fine_tuning.job.event of type "message".
nlohmann::json EventJson(const std::string& job_id, const v1::JobEvent& event);
// A fine_tuning.job.event of type "metrics": the step's values in "data".
nlohmann::json MetricEventJson(const std::string& job_id,
                               const v1::MetricPoint& point,
                               int64_t total_steps);
// The sequence number of an event id made by EventJson / MetricEventJson
// for `job_id`; INVALID_ARGUMENT (param "after") for another string.
absl::StatusOr<int64_t> EventSequence(const std::string& job_id,
                                      const std::string& event_id);
nlohmann::json CheckpointJson(const v1::Job& job,
                              const v1::Checkpoint& checkpoint);
std::string CheckpointId(const std::string& job_id,
                         const v1::Checkpoint& checkpoint);

}  // namespace ftune::server::http

#endif  // FTUNE_SERVER_HTTP_OPENAI_JSON_H_
