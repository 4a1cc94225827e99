#include "server/store/migrations.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace ftune::store {

// Never edit a migration that has shipped: add a new one.
// Times are INTEGER microseconds since the Unix epoch (NULL = unset).
const std::vector<Migration>& Migrations() {
  static const auto* const kMigrations = new std::vector<Migration>{
      {1,
       "tenants, api keys, models, files, jobs, events, metrics, checkpoints",
       R"sql(
CREATE TABLE tenants(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  weight REAL NOT NULL,
  max_queued_jobs INTEGER NOT NULL DEFAULT 0,
  max_running_jobs INTEGER NOT NULL DEFAULT 0,
  max_gpus INTEGER NOT NULL DEFAULT 0,
  create_time INTEGER NOT NULL);
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  role INTEGER NOT NULL,
  tenant_id TEXT REFERENCES tenants(id),
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  revoke_time INTEGER);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
CREATE TABLE models(
  name TEXT PRIMARY KEY,
  directory TEXT NOT NULL,
  metadata TEXT NOT NULL DEFAULT '{}',
  update_time INTEGER NOT NULL);
CREATE TABLE files(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  filename TEXT NOT NULL,
  purpose TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  status INTEGER NOT NULL,
  status_detail TEXT NOT NULL DEFAULT '',
  format TEXT NOT NULL DEFAULT '',
  example_count INTEGER NOT NULL DEFAULT 0,
  storage_path TEXT NOT NULL,
  create_time INTEGER NOT NULL);
CREATE INDEX files_tenant_seq ON files(tenant_id, seq);
CREATE TABLE jobs(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  state INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  restart_count INTEGER NOT NULL DEFAULT 0,
  request_id TEXT,
  spec BLOB NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  gpus INTEGER NOT NULL DEFAULT 0,
  memory_bytes INTEGER NOT NULL DEFAULT 0,
  gpu_type TEXT NOT NULL DEFAULT '',
  cpu_threads INTEGER NOT NULL DEFAULT 0,
  max_restarts INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{}',
  model TEXT NOT NULL,
  training_file_id TEXT NOT NULL,
  validation_file_id TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL,
  update_time INTEGER NOT NULL,
  start_time INTEGER,
  end_time INTEGER,
  error_reason INTEGER NOT NULL DEFAULT 0,
  error_message TEXT NOT NULL DEFAULT '',
  error_retryable INTEGER NOT NULL DEFAULT 0,
  progress_step INTEGER NOT NULL DEFAULT 0,
  progress_total_steps INTEGER NOT NULL DEFAULT 0,
  progress_epoch REAL NOT NULL DEFAULT 0,
  progress_tokens INTEGER NOT NULL DEFAULT 0,
  latest_metrics TEXT,
  worker_id TEXT NOT NULL DEFAULT '',
  lease_expiry INTEGER,
  checkpoint_step INTEGER,
  checkpoint_attempt INTEGER,
  checkpoint_path TEXT,
  checkpoint_time INTEGER,
  adapter_path TEXT NOT NULL DEFAULT '',
  adapter_manifest_sha256 TEXT NOT NULL DEFAULT '',
  last_sequence INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX jobs_request ON jobs(tenant_id, request_id)
  WHERE request_id IS NOT NULL;
CREATE INDEX jobs_tenant_seq ON jobs(tenant_id, seq);
CREATE INDEX jobs_tenant_state ON jobs(tenant_id, state);
CREATE INDEX jobs_state_seq ON jobs(state, seq);
CREATE INDEX jobs_training_file ON jobs(training_file_id);
CREATE INDEX jobs_validation_file ON jobs(validation_file_id);
CREATE TABLE job_labels(
  job_seq INTEGER NOT NULL REFERENCES jobs(seq),
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(key, value, job_seq)) WITHOUT ROWID;
CREATE TABLE job_events(
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  time INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  type INTEGER NOT NULL,
  from_state INTEGER,
  to_state INTEGER,
  message TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(job_id, sequence)) WITHOUT ROWID;
CREATE TABLE job_metrics(
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  time INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  step INTEGER NOT NULL,
  epoch REAL NOT NULL,
  train_loss REAL NOT NULL,
  eval_loss REAL,
  lr REAL NOT NULL,
  grad_norm REAL NOT NULL,
  tokens_per_s REAL NOT NULL,
  peak_memory_bytes INTEGER NOT NULL,
  PRIMARY KEY(job_id, sequence)) WITHOUT ROWID;
CREATE TABLE checkpoints(
  job_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  path TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY(job_id, step)) WITHOUT ROWID;
)sql"},
      {2, "workers and lease expiry index",
       R"sql(
CREATE TABLE workers(
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  gpus INTEGER NOT NULL DEFAULT 0,
  gpu_type TEXT NOT NULL DEFAULT '',
  gpu_memory_bytes INTEGER NOT NULL DEFAULT 0,
  cpu_slots INTEGER NOT NULL DEFAULT 0,
  memory_bytes INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{}',
  version TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  register_time INTEGER NOT NULL,
  last_heartbeat INTEGER NOT NULL,
  lease_expiry INTEGER NOT NULL);
CREATE INDEX jobs_lease_expiry ON jobs(lease_expiry)
  WHERE lease_expiry IS NOT NULL;
CREATE INDEX jobs_worker ON jobs(worker_id) WHERE worker_id != '';
)sql"},
      {3,
       "attempts (the worker protocol's per-attempt record), worker GPUs, "
       "adapter files",
       R"sql(
ALTER TABLE workers ADD COLUMN gpu_indices TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN adapter_detail TEXT NOT NULL DEFAULT '{}';
CREATE TABLE attempts(
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  tenant_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  gpu_indices TEXT NOT NULL DEFAULT '',
  cpu_threads INTEGER NOT NULL DEFAULT 0,
  grant_time INTEGER NOT NULL,
  last_batch INTEGER NOT NULL DEFAULT 0,
  outcome INTEGER NOT NULL DEFAULT 0,
  end_time INTEGER,
  PRIMARY KEY(job_id, attempt)) WITHOUT ROWID;
CREATE INDEX attempts_tenant_grant ON attempts(tenant_id, grant_time);
)sql"},
      {4,
       "absent metric values stay absent: NULL train_loss on evaluation-only "
       "points, job events carry their step, jobs keep a metrics summary "
       "with the latest and best evaluation",
       R"sql(
CREATE TABLE job_metrics_v4(
  job_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  time INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  step INTEGER NOT NULL,
  epoch REAL NOT NULL,
  train_loss REAL,
  eval_loss REAL,
  lr REAL NOT NULL,
  grad_norm REAL NOT NULL,
  tokens_per_s REAL NOT NULL,
  peak_memory_bytes INTEGER NOT NULL,
  PRIMARY KEY(job_id, sequence)) WITHOUT ROWID;
-- Earlier servers stored 0 for the train loss of an evaluation-only point.
INSERT INTO job_metrics_v4
  SELECT job_id, sequence, time, attempt, step, epoch,
         CASE WHEN train_loss = 0 AND eval_loss IS NOT NULL THEN NULL
              ELSE train_loss END,
         eval_loss, lr, grad_norm, tokens_per_s, peak_memory_bytes
  FROM job_metrics;
DROP TABLE job_metrics;
ALTER TABLE job_metrics_v4 RENAME TO job_metrics;
ALTER TABLE job_events ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
-- CHECKPOINT (3), EVAL (6), BATCH_SIZE_REDUCED (7) and EARLY_STOPPED (8)
-- events have always said "... at step N..." in words.
UPDATE job_events
  SET step = CAST(substr(message, instr(message, ' at step ') + 9) AS INTEGER)
  WHERE type IN (3, 6, 7, 8) AND instr(message, ' at step ') > 0;
-- jobs.latest_metrics was the newest point; it becomes the summary
-- (rows.h, EncodeMetricsSummary) folded from the stored points.
UPDATE jobs SET latest_metrics = json_object(
  'train', json((SELECT json_object(
      'sequence', m.sequence, 'time_us', m.time, 'attempt', m.attempt,
      'step', m.step, 'epoch', m.epoch, 'train_loss', m.train_loss,
      'lr', m.lr, 'grad_norm', m.grad_norm, 'tokens_per_s', m.tokens_per_s,
      'peak_memory_bytes', m.peak_memory_bytes)
    FROM job_metrics m WHERE m.job_id = jobs.id AND m.train_loss IS NOT NULL
    ORDER BY m.sequence DESC LIMIT 1)),
  'eval_loss', (SELECT m.eval_loss FROM job_metrics m
    WHERE m.job_id = jobs.id AND m.eval_loss IS NOT NULL
    ORDER BY m.sequence DESC LIMIT 1),
  'eval_step', (SELECT m.step FROM job_metrics m
    WHERE m.job_id = jobs.id AND m.eval_loss IS NOT NULL
    ORDER BY m.sequence DESC LIMIT 1),
  'best_eval_loss', (SELECT m.eval_loss FROM job_metrics m
    WHERE m.job_id = jobs.id AND m.eval_loss IS NOT NULL
    ORDER BY m.eval_loss, m.sequence LIMIT 1),
  'best_eval_step', (SELECT m.step FROM job_metrics m
    WHERE m.job_id = jobs.id AND m.eval_loss IS NOT NULL
    ORDER BY m.eval_loss, m.sequence LIMIT 1),
  'peak_memory_bytes', (SELECT m.peak_memory_bytes FROM job_metrics m
    WHERE m.job_id = jobs.id ORDER BY m.sequence DESC LIMIT 1))
WHERE latest_metrics IS NOT NULL;
)sql"},
      {5,
       "trainer capabilities: what each worker's trainer runs, what each job "
       "asks of a trainer (JSON, '' = not recorded)",
       R"sql(
ALTER TABLE workers ADD COLUMN trainer TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN trainer_requirement TEXT NOT NULL DEFAULT '';
)sql"},
      {6,
       "preference metrics: a metric point's DPO/ORPO statistics of its "
       "training and validation pairs (JSON, '' = none)",
       R"sql(
ALTER TABLE job_metrics ADD COLUMN preference TEXT NOT NULL DEFAULT '';
)sql"},
      {7,
       "sample completions: the texts a job's trainer generated for its "
       "validation prompts at step 0 and at every evaluation",
       R"sql(
CREATE TABLE job_samples(
  job_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  prompt TEXT NOT NULL,
  expected TEXT,
  completion TEXT NOT NULL,
  finish_reason TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  PRIMARY KEY(job_id, step, idx)) WITHOUT ROWID;
)sql"},
      {8,
       "webhooks: tenants' endpoints and the delivery outbox (written in the "
       "transaction of the job event that causes it)",
       R"sql(
CREATE TABLE webhook_endpoints(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  url TEXT NOT NULL,
  event_types TEXT NOT NULL,
  secret TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints(tenant_id, seq);
CREATE TABLE webhook_deliveries(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  endpoint_id TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  job_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  create_time INTEGER NOT NULL,
  next_attempt_time INTEGER,
  last_attempt_time INTEGER,
  last_status_code INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  last_response TEXT NOT NULL DEFAULT '');
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_time)
  WHERE state = 1;
)sql"},
      {9,
       "webhook secret rotation: the previous secret and until when "
       "deliveries are also signed with it",
       R"sql(
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret TEXT NOT NULL
  DEFAULT '';
ALTER TABLE webhook_endpoints ADD COLUMN previous_secret_expiry INTEGER
  NOT NULL DEFAULT 0;
)sql"},
      {10,
       "models a full fine-tuning job produced: the owning tenant and the "
       "job (both empty for the operator's models)",
       R"sql(
ALTER TABLE models ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE models ADD COLUMN job_id TEXT NOT NULL DEFAULT '';
CREATE INDEX models_tenant ON models(tenant_id) WHERE tenant_id != '';
)sql"},
      {11,
       "try jobs: jobs.kind is 'train' or 'try' (JobService.TryModel: "
       "generation with another job's model, no adapter)",
       R"sql(
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'train';
)sql"},
  };
  return *kMigrations;
}

int64_t LatestSchemaVersion() { return Migrations().back().version; }

absl::Status Migrate(Connection& conn, int64_t target_version) {
  if (target_version < 0) target_version = LatestSchemaVersion();
  FTUNE_ASSIGN_OR_RETURN(int64_t current, conn.UserVersion());
  if (current > LatestSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database schema version ", current,
        " is newer than this binary supports (", LatestSchemaVersion(),
        "); refusing to open it (upgrade ftune-scheduler)"));
  }
  for (const Migration& m : Migrations()) {
    if (m.version <= current || m.version > target_version) continue;
    FTUNE_RETURN_IF_ERROR(conn.Exec("BEGIN IMMEDIATE"));
    absl::Status s = conn.Exec(m.sql);
    if (s.ok()) {
      s = conn.Exec(absl::StrCat("PRAGMA user_version=", m.version));
    }
    if (s.ok()) s = conn.Exec("COMMIT");
    if (!s.ok()) {
      (void)conn.Exec("ROLLBACK");
      return Annotate(s, absl::StrCat("schema migration ", m.version, " (",
                                      m.description, ")"));
    }
    FTUNE_LOG(INFO) << "database migrated to schema version " << m.version
                    << ": " << m.description;
  }
  return absl::OkStatus();
}

}  // namespace ftune::store
