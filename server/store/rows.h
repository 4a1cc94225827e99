// Internal to ftune_store: mapping between rows and core records, page
// tokens and argument checks shared by the SqliteStore source files.
#ifndef FTUNE_SERVER_STORE_ROWS_H_
#define FTUNE_SERVER_STORE_ROWS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/types.h"
#include "server/store/sqlite_db.h"

namespace ftune::store::internal {

std::string EncodeStringMap(const std::map<std::string, std::string>& m);
absl::StatusOr<std::map<std::string, std::string>> DecodeStringMap(
    const std::string& json, absl::string_view what);

// "0,1,3" <-> {0, 1, 3}; "" is empty. DATA_LOSS for anything else.
std::string EncodeIntList(const std::vector<int32_t>& v);
absl::StatusOr<std::vector<int32_t>> DecodeIntList(const std::string& text);

// Adapter files, step and publish time as JSON (jobs.adapter_detail).
std::string EncodeAdapterDetail(const core::Adapter& a);
absl::Status DecodeAdapterDetail(const std::string& text, core::Adapter* a);

// jobs.latest_metrics: a job's JobMetricsSummary as JSON (schema 4 on;
// migration 4 rewrote the older single-point form). Absent values are
// absent keys (or null).
// job_metrics.preference: "" when the point has none of its statistics,
// else {"train": {...}, "eval": {...}, "eval_task": {...}} (each present
// when set): the preference statistics and, in the same column (no schema
// change), the evaluation's task metrics.
std::string EncodePointPreference(const core::MetricPoint& p);
absl::Status DecodePointPreference(const std::string& text,
                                   core::MetricPoint* p);

std::string EncodeMetricsSummary(const core::JobMetricsSummary& m);
absl::StatusOr<core::JobMetricsSummary> DecodeMetricsSummary(
    const std::string& json);

// "<kind>:<seq>" as web-safe base64. Parse: INVALID_ARGUMENT if malformed or
// of another kind. Empty token -> 0 (start).
std::string EncodePageToken(absl::string_view kind, int64_t seq);
absl::StatusOr<int64_t> DecodePageToken(absl::string_view kind,
                                        absl::string_view token);
int ClampPageSize(int page_size);

// INVALID_ARGUMENT for an empty tenant id.
absl::Status CheckTenantArg(absl::string_view tenant_id);
// True if `tenant_id` may see an object owned by `owner`.
bool TenantSees(absl::string_view tenant_id, absl::string_view owner);

// SELECT list for jobs (without spec unless asked) and its decoder.
std::string JobColumns(bool with_spec);
absl::StatusOr<core::Job> ReadJobRow(const Statement& st, bool with_spec);
// How many columns JobColumns(with_spec) selects.
int JobColumnCount(bool with_spec);

// Loads a job by id on `conn` (any tenant). NOT_FOUND if missing.
absl::StatusOr<core::Job> LoadJob(Connection& conn, absl::string_view job_id,
                                  bool with_spec);

// Loaders on a connection inside a transaction (defined in sqlite_store.cc).
absl::StatusOr<std::vector<core::Worker>> LoadAllWorkers(Connection& conn);
absl::StatusOr<std::vector<core::Tenant>> LoadAllTenants(Connection& conn);
absl::StatusOr<core::Tenant> LoadTenantById(Connection& conn,
                                            absl::string_view id);
absl::StatusOr<core::Model> LoadModel(Connection& conn, absl::string_view name);
// The columns LoadModel reads, in order.
inline constexpr char kModelColumns[] =
    "name, directory, metadata, update_time, tenant_id, job_id";
// A model `tenant_id` may use (the operator's, or its own fine-tuned one;
// kAnyTenant: any); NOT_FOUND otherwise, as for a name never registered.
absl::StatusOr<core::Model> LoadVisibleModel(Connection& conn,
                                             absl::string_view tenant_id,
                                             absl::string_view name);
// Inserts or replaces `model` (update_time set to `now`).
absl::Status WriteModel(Connection& conn, const core::Model& model,
                        absl::Time now);
// A file of `tenant_id` that is not deleted; NOT_FOUND otherwise.
absl::StatusOr<core::FileRecord> LoadVisibleFile(Connection& conn,
                                                 absl::string_view tenant_id,
                                                 absl::string_view id);
absl::StatusOr<core::Worker> LoadWorkerById(Connection& conn,
                                            absl::string_view id);

}  // namespace ftune::store::internal

#endif  // FTUNE_SERVER_STORE_ROWS_H_
