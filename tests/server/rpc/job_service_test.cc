// JobService, AdminService and ModelService over a real gRPC server on a
// loopback port and a real SQLite file (rpc_fixture.h).
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "server/core/storage_layout.h"
#include "tests/server/rpc/rpc_fixture.h"

namespace ftune::server::testing {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

// Leases are granted by hand through the store where a test needs one.
class JobServiceTest : public RpcTest {
 protected:
  JobServiceTest() { dispatch_ = false; }
};

TEST_F(JobServiceTest, AuthFailures) {
  TenantKey a = MakeTenant("a");
  v1::ListJobsRequest list;
  v1::ListJobsResponse resp;
  auto list_with = [&](const std::string& key) {
    return Call(key, [&](grpc::ClientContext* c) {
      return jobs_->ListJobs(c, list, &resp);
    });
  };
  EXPECT_OK(list_with(a.key));
  EXPECT_THAT(list_with(""), StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_THAT(list_with("ftk_" + std::string(40, 'a')),
              StatusIs(absl::StatusCode::kUnauthenticated, _));
  EXPECT_THAT(list_with("not-a-key"),
              StatusIs(absl::StatusCode::kUnauthenticated, _));
  // The admin and worker credentials are not tenant keys.
  EXPECT_THAT(list_with(kAdminKey),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(list_with(kWorkerKey),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  // A tenant key on AdminService.
  v1::ListTenantsRequest lt;
  v1::ListTenantsResponse ltr;
  EXPECT_THAT(Call(a.key,
                   [&](grpc::ClientContext* c) {
                     return admin_->ListTenants(c, lt, &ltr);
                   }),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
  // Revoked keys stop working at once.
  v1::RevokeApiKeyRequest rev;
  rev.set_key_id(a.key_id);
  v1::ApiKey revoked;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->RevokeApiKey(c, rev, &revoked);
  }));
  EXPECT_TRUE(revoked.has_revoke_time());
  EXPECT_THAT(list_with(a.key),
              StatusIs(absl::StatusCode::kUnauthenticated, _));
  // Revoking again is idempotent.
  EXPECT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->RevokeApiKey(c, rev, &revoked);
  }));
}

TEST_F(JobServiceTest, TenantsNeverSeeEachOthersJobsOrFiles) {
  TenantKey a = MakeTenant("a");
  TenantKey b = MakeTenant("b");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  EXPECT_EQ(job.tenant_id(), a.tenant_id);

  v1::GetJobRequest get;
  v1::Job out;
  get.set_job_id(job.id());
  absl::Status foreign = Call(b.key, [&](grpc::ClientContext* c) {
    return jobs_->GetJob(c, get, &out);
  });
  const std::string never = "job-aaaaaaaaaaaaaaaaaaaaaaaa";
  get.set_job_id(never);
  absl::Status missing = Call(b.key, [&](grpc::ClientContext* c) {
    return jobs_->GetJob(c, get, &out);
  });
  EXPECT_THAT(foreign, StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, _));
  // Same words, only the id differs.
  std::string foreign_msg(foreign.message());
  foreign_msg.replace(foreign_msg.find(job.id()), job.id().size(), never);
  EXPECT_EQ(foreign_msg, missing.message());

  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  EXPECT_THAT(Call(b.key,
                   [&](grpc::ClientContext* c) {
                     return jobs_->CancelJob(c, cancel, &out);
                   }),
              StatusIs(absl::StatusCode::kNotFound, _));
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_OK(Call(b.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, list, &listed);
  }));
  EXPECT_EQ(listed.jobs_size(), 0);
  // B cannot train on A's file: same answer as an unknown file.
  v1::CreateJobRequest req = JobRequest(b);
  req.mutable_spec()->set_training_file(a.file_id);
  absl::StatusOr<v1::Job> stolen = CreateJob(b, req);
  EXPECT_THAT(stolen, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("no file")));
  EXPECT_EQ(InfoOf(stolen.status()).field(), "spec.training_file");
}

TEST_F(JobServiceTest, CreateJobReportsEveryInvalidField) {
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  v1::JobSpec* spec = req.mutable_spec();
  spec->mutable_hyperparameters()->set_learning_rate(5);
  spec->mutable_lora()->set_rank(300);
  spec->mutable_lora()->add_target_modules("q_proj");
  spec->mutable_lora()->add_target_modules("attn_proj");
  spec->mutable_resources()->set_gpus(17);
  spec->mutable_hyperparameters()->set_max_seq_length(1024);  // model: 512
  absl::StatusOr<v1::Job> job = CreateJob(a, req);
  ASSERT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_EQ(InfoOf(job.status()).field(), "spec.lora.rank");
  const std::string msg(job.status().message());
  EXPECT_THAT(msg, HasSubstr("spec.lora.rank: must be in [1, 256], got 300"));
  EXPECT_THAT(msg, HasSubstr("spec.lora.target_modules[1]: unsupported target "
                             "module \"attn_proj\""));
  EXPECT_THAT(msg, HasSubstr("spec.hyperparameters.learning_rate: must be in "
                             "(0, 1], got 5"));
  EXPECT_THAT(msg, HasSubstr("spec.hyperparameters.max_seq_length: must be in "
                             "[16, 512], got 1024"));
  EXPECT_THAT(msg,
              HasSubstr("spec.resources.gpus: must be in [0, 16], got 17"));

  // Unknown model, file of another purpose, not-ready file, unsupported
  // method.
  v1::CreateJobRequest bad_model = JobRequest(a);
  bad_model.mutable_spec()->set_model("gpt-9");
  absl::StatusOr<v1::Job> r = CreateJob(a, bad_model);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("unknown model \"gpt-9\"")));
  EXPECT_EQ(InfoOf(r.status()).field(), "spec.model");

  v1::CreateJobRequest bad_val = JobRequest(a);
  bad_val.mutable_spec()->set_validation_file(MakeFile(
      a.tenant_id, "fine-tune-train", 10, core::FileStatus::kProcessing));
  r = CreateJob(a, bad_val);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("has purpose fine-tune-train")));
  EXPECT_EQ(InfoOf(r.status()).field(), "spec.validation_file");

  v1::CreateJobRequest not_ready = JobRequest(a);
  not_ready.mutable_spec()->set_training_file(MakeFile(
      a.tenant_id, "fine-tune-train", 10, core::FileStatus::kProcessing));
  r = CreateJob(a, not_ready);
  EXPECT_THAT(
      r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not ready")));

  v1::CreateJobRequest qlora = JobRequest(a);
  qlora.mutable_spec()->set_model("plain");
  qlora.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  r = CreateJob(a, qlora);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("does not support TRAINING_METHOD_QLORA")));
  EXPECT_EQ(InfoOf(r.status()).field(), "spec.method");
  // "plain" has no chat template, and the file is chat: "auto" is refused.
  v1::CreateJobRequest plain = JobRequest(a);
  plain.mutable_spec()->set_model("plain");
  r = CreateJob(a, plain);
  EXPECT_EQ(InfoOf(r.status()).field(), "spec.hyperparameters.chat_template");
  plain.mutable_spec()->mutable_hyperparameters()->set_chat_template("chatml");
  EXPECT_OK(CreateJob(a, plain));
}

TEST_F(JobServiceTest, CreateJobResolvesDefaults) {
  TenantKey a = MakeTenant("a");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.attempt(), 0);
  EXPECT_EQ(job.spec().method(), v1::TRAINING_METHOD_LORA);
  EXPECT_EQ(job.spec().lora().rank(), 16);
  EXPECT_EQ(job.spec().lora().alpha(), 32);
  EXPECT_EQ(job.spec().hyperparameters().max_seq_length(), 512);
  EXPECT_EQ(job.spec().hyperparameters().chat_template(), "chatml");
  EXPECT_TRUE(job.spec().hyperparameters().has_seed());
  EXPECT_EQ(job.spec().resources().gpus(), 1);
  EXPECT_EQ(job.spec().max_restarts(), 3);
  EXPECT_EQ(job.last_sequence(), 1);
}

TEST_F(JobServiceTest, RequestIdIsIdempotentUnderConcurrentDuplicates) {
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  req.set_request_id("retry-me-1");
  constexpr int kThreads = 12;
  std::vector<std::string> ids(kThreads);
  std::vector<absl::Status> statuses(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<v1::Job> job = CreateJob(a, req);
      statuses[i] = job.status();
      if (job.ok()) ids[i] = job->id();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_OK(statuses[i]);
    EXPECT_EQ(ids[i], ids[0]);
  }
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, list, &listed);
  }));
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).request_id(), "retry-me-1");

  // Same request_id, different spec: ALREADY_EXISTS naming the job.
  req.mutable_spec()->set_priority(5);
  absl::StatusOr<v1::Job> other = CreateJob(a, req);
  EXPECT_THAT(other, StatusIs(absl::StatusCode::kAlreadyExists, _));
  EXPECT_EQ(InfoOf(other.status()).resource_id(), ids[0]);
  // Another tenant may use the same request_id.
  TenantKey b = MakeTenant("b");
  v1::CreateJobRequest breq = JobRequest(b);
  breq.set_request_id("retry-me-1");
  ASSERT_OK_AND_ASSIGN(v1::Job bjob, CreateJob(b, breq));
  EXPECT_NE(bjob.id(), ids[0]);
  // Malformed request ids are refused.
  breq.set_request_id("has space");
  EXPECT_EQ(InfoOf(CreateJob(b, breq).status()).field(), "request_id");
}

TEST_F(JobServiceTest, ValidateOnlyChangesNothing) {
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  req.set_validate_only(true);
  req.set_request_id("dry");
  req.mutable_spec()->set_validation_split(0.1);
  req.mutable_spec()->mutable_hyperparameters()->set_batch_size(8);
  v1::CreateJobResponse resp;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->CreateJob(c, req, &resp);
  }));
  EXPECT_EQ(resp.job().id(), "");
  EXPECT_EQ(resp.job().state(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(resp.job().spec().lora().rank(), 16);
  EXPECT_EQ(resp.estimate().train_examples(), 90);
  EXPECT_EQ(resp.estimate().validation_examples(), 10);
  EXPECT_EQ(resp.estimate().effective_batch_size(), 8);
  EXPECT_EQ(resp.estimate().steps_per_epoch(), 12);
  EXPECT_EQ(resp.estimate().total_steps(), 36);
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, list, &listed);
  }));
  EXPECT_EQ(listed.jobs_size(), 0);
  // The dry run did not consume the request_id.
  req.set_validate_only(false);
  ASSERT_OK_AND_ASSIGN(v1::Job real, CreateJob(a, req));
  EXPECT_FALSE(real.id().empty());
  // A dry run still reports invalid specs.
  req.set_validate_only(true);
  req.mutable_spec()->set_priority(1000);
  EXPECT_EQ(InfoOf(CreateJob(a, req).status()).field(), "spec.priority");
}

TEST_F(JobServiceTest, QuotasAreEnforcedWithErrorInfo) {
  v1::Quota quota;
  quota.set_max_queued_jobs(2);
  quota.set_max_gpus(2);
  TenantKey a = MakeTenant("a", quota);
  ASSERT_OK(CreateJob(a, JobRequest(a)));
  ASSERT_OK_AND_ASSIGN(v1::Job second, CreateJob(a, JobRequest(a)));
  absl::StatusOr<v1::Job> third = CreateJob(a, JobRequest(a));
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted,
                              HasSubstr("max_queued_jobs")));
  EXPECT_EQ(InfoOf(third.status()).quota(), "max_queued_jobs");
  EXPECT_EQ(InfoOf(third.status()).limit(), 2);
  // A dry run says the same.
  v1::CreateJobRequest dry = JobRequest(a);
  dry.set_validate_only(true);
  EXPECT_EQ(InfoOf(CreateJob(a, dry).status()).quota(), "max_queued_jobs");
  // Cancelling one frees a slot.
  v1::CancelJobRequest cancel;
  cancel.set_job_id(second.id());
  v1::Job out;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->CancelJob(c, cancel, &out);
  }));
  v1::CreateJobRequest big = JobRequest(a);
  big.mutable_spec()->mutable_resources()->set_gpus(4);
  absl::StatusOr<v1::Job> too_big = CreateJob(a, big);
  EXPECT_THAT(too_big, StatusIs(absl::StatusCode::kResourceExhausted, _));
  EXPECT_EQ(InfoOf(too_big.status()).quota(), "max_gpus");
  EXPECT_EQ(InfoOf(too_big.status()).limit(), 2);
  ASSERT_OK(CreateJob(a, JobRequest(a)));

  v1::GetQuotaRequest gq;
  gq.set_tenant_id(a.tenant_id);
  v1::QuotaStatus qs;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->GetQuota(c, gq, &qs);
  }));
  EXPECT_EQ(qs.quota().max_queued_jobs(), 2);
  EXPECT_EQ(qs.usage().queued_jobs(), 2);
  // Raising the quota lets more in.
  v1::SetQuotaRequest sq;
  sq.set_tenant_id(a.tenant_id);
  sq.mutable_quota()->set_max_queued_jobs(3);
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->SetQuota(c, sq, &qs);
  }));
  EXPECT_OK(CreateJob(a, JobRequest(a)));
}

TEST_F(JobServiceTest, CancelPauseResumeFollowTheStateMachine) {
  TenantKey a = MakeTenant("a");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  v1::Job out;
  auto pause = [&] {
    v1::PauseJobRequest r;
    r.set_job_id(job.id());
    return Call(a.key, [&](grpc::ClientContext* c) {
      return jobs_->PauseJob(c, r, &out);
    });
  };
  auto resume = [&] {
    v1::ResumeJobRequest r;
    r.set_job_id(job.id());
    return Call(a.key, [&](grpc::ClientContext* c) {
      return jobs_->ResumeJob(c, r, &out);
    });
  };
  auto cancel = [&] {
    v1::CancelJobRequest r;
    r.set_job_id(job.id());
    return Call(a.key, [&](grpc::ClientContext* c) {
      return jobs_->CancelJob(c, r, &out);
    });
  };
  ASSERT_OK(resume());  // QUEUED: nothing to resume, no change.
  EXPECT_EQ(out.state(), v1::JOB_STATE_QUEUED);
  ASSERT_OK(pause());
  EXPECT_EQ(out.state(), v1::JOB_STATE_PAUSED);
  ASSERT_OK(pause());  // Idempotent.
  EXPECT_EQ(out.state(), v1::JOB_STATE_PAUSED);
  ASSERT_OK(resume());
  EXPECT_EQ(out.state(), v1::JOB_STATE_QUEUED);
  ASSERT_OK(cancel());
  EXPECT_EQ(out.state(), v1::JOB_STATE_CANCELLED);
  ASSERT_OK(cancel());  // Idempotent.
  EXPECT_EQ(out.state(), v1::JOB_STATE_CANCELLED);
  absl::Status st = pause();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("JOB_STATE_CANCELLED")));
  EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_CANCELLED");
  st = resume();
  EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_CANCELLED");

  // A finished job cannot be cancelled. Drive one to SUCCEEDED the way a
  // worker would, through the store.
  ASSERT_OK_AND_ASSIGN(v1::Job done, CreateJob(a, JobRequest(a)));
  core::Worker w;
  w.hostname = "test";
  w.capabilities.gpus = 1;
  ASSERT_OK_AND_ASSIGN(core::Worker worker,
                       store().RegisterWorker(w, absl::Now() + absl::Hours(1)));
  ASSERT_OK_AND_ASSIGN(core::Job running,
                       store().GrantLease(done.id(), 1, worker.id,
                                          absl::Now() + absl::Hours(1)));
  core::AttemptEnd end;
  end.outcome = core::AttemptOutcome::kSucceeded;
  end.adapter.path = "jobs/x/adapter";
  ASSERT_OK(store().EndAttempt(done.id(), running.attempt, worker.id, end));
  v1::CancelJobRequest r;
  r.set_job_id(done.id());
  st = Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->CancelJob(c, r, &out);
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_SUCCEEDED");
  v1::GetJobRequest g;
  g.set_job_id(done.id());
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->GetJob(c, g, &out);
  }));
  EXPECT_EQ(out.attempt(), 1);
  EXPECT_EQ(out.adapter().path(), "jobs/x/adapter");
  // Events of the job, in sequence order, paged.
  v1::ListJobEventsRequest er;
  er.set_job_id(done.id());
  er.set_page_size(1);
  std::vector<int64_t> seqs;
  for (int guard = 0; guard < 20; ++guard) {
    v1::ListJobEventsResponse events;
    ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
      return jobs_->ListJobEvents(c, er, &events);
    }));
    for (const auto& e : events.events()) seqs.push_back(e.sequence());
    if (events.next_page_token().empty()) break;
    er.set_page_token(events.next_page_token());
  }
  ASSERT_GE(seqs.size(), 3u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], int64_t(i) + 1);
}

TEST_F(JobServiceTest, PaginationIsStableUnderConcurrentInserts) {
  TenantKey a = MakeTenant("a");
  std::set<std::string> before;
  for (int i = 0; i < 25; ++i) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
    before.insert(job.id());
  }
  std::atomic<bool> stop{false};
  std::set<std::string> during;
  std::thread inserter([&] {
    while (!stop.load()) {
      absl::StatusOr<v1::Job> job = CreateJob(a, JobRequest(a));
      if (job.ok()) during.insert(job->id());
    }
  });
  std::vector<std::string> seen;
  v1::ListJobsRequest req;
  req.set_page_size(4);
  bool first = true;
  for (int guard = 0; guard < 100; ++guard) {
    v1::ListJobsResponse page;
    ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
      return jobs_->ListJobs(c, req, &page);
    }));
    if (first) {
      // Let a few inserts land between the pages.
      absl::SleepFor(absl::Milliseconds(200));
      first = false;
    }
    for (const auto& j : page.jobs()) seen.push_back(j.id());
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  stop = true;
  inserter.join();
  EXPECT_FALSE(during.empty());
  std::set<std::string> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), seen.size()) << "a job appeared twice";
  for (const std::string& id : before) {
    EXPECT_TRUE(unique.count(id)) << "missed " << id;
  }
  // Filters are bound to the token.
  req.add_states(v1::JOB_STATE_PAUSED);
  v1::ListJobsRequest restart = req;
  v1::ListJobsRequest first_page;
  first_page.set_page_size(4);
  v1::ListJobsResponse page;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, first_page, &page);
  }));
  ASSERT_FALSE(page.next_page_token().empty());
  restart.set_page_token(page.next_page_token());
  absl::Status st = Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, restart, &page);
  });
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_EQ(InfoOf(st).field(), "page_token");
  req.set_page_size(1001);
  EXPECT_EQ(InfoOf(Call(a.key,
                        [&](grpc::ClientContext* c) {
                          return jobs_->ListJobs(c, req, &page);
                        }))
                .field(),
            "page_size");
}

TEST_F(JobServiceTest, ListJobsFiltersByStateAndLabels) {
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  (*req.mutable_spec()->mutable_labels())["team"] = "search";
  ASSERT_OK_AND_ASSIGN(v1::Job labelled, CreateJob(a, req));
  ASSERT_OK_AND_ASSIGN(v1::Job plain, CreateJob(a, JobRequest(a)));
  v1::PauseJobRequest pause;
  pause.set_job_id(plain.id());
  v1::Job out;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->PauseJob(c, pause, &out);
  }));
  v1::ListJobsRequest list;
  v1::ListJobsResponse resp;
  list.set_label_selector("team=search");
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, list, &resp);
  }));
  ASSERT_EQ(resp.jobs_size(), 1);
  EXPECT_EQ(resp.jobs(0).id(), labelled.id());
  list.clear_label_selector();
  list.add_states(v1::JOB_STATE_PAUSED);
  resp.Clear();
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->ListJobs(c, list, &resp);
  }));
  ASSERT_EQ(resp.jobs_size(), 1);
  EXPECT_EQ(resp.jobs(0).id(), plain.id());
  list.set_label_selector("novalue");
  EXPECT_EQ(InfoOf(Call(a.key,
                        [&](grpc::ClientContext* c) {
                          return jobs_->ListJobs(c, list, &resp);
                        }))
                .field(),
            "label_selector");
}

TEST_F(JobServiceTest, ModelsComeFromTheConfigFile) {
  TenantKey a = MakeTenant("a");
  v1::ListModelsRequest req;
  v1::ListModelsResponse resp;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return models_->ListModels(c, req, &resp);
  }));
  ASSERT_EQ(resp.models_size(), 2);
  EXPECT_EQ(resp.models(0).name(), "plain");
  EXPECT_EQ(resp.models(0).supported_methods_size(), 1);
  const v1::Model& tiny = resp.models(1);
  EXPECT_EQ(tiny.name(), "tiny");
  EXPECT_EQ(tiny.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(tiny.max_position_embeddings(), 512);
  EXPECT_EQ(tiny.num_key_value_heads(), 2);
  EXPECT_EQ(tiny.default_chat_template(), "chatml");
  // Unless the config says otherwise: LoRA, QLoRA and full fine-tuning.
  EXPECT_THAT(tiny.supported_methods(),
              ::testing::ElementsAre(v1::TRAINING_METHOD_LORA,
                                     v1::TRAINING_METHOD_QLORA,
                                     v1::TRAINING_METHOD_FULL));
  EXPECT_TRUE(tiny.owner_tenant_id().empty());
  v1::GetModelRequest get;
  get.set_name("nope");
  v1::Model m;
  EXPECT_THAT(Call(a.key,
                   [&](grpc::ClientContext* c) {
                     return models_->GetModel(c, get, &m);
                   }),
              StatusIs(absl::StatusCode::kNotFound, _));
  get.set_name("tiny");
  EXPECT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return models_->GetModel(c, get, &m);
  }));
  EXPECT_THAT(Call(kWorkerKey,
                   [&](grpc::ClientContext* c) {
                     return models_->GetModel(c, get, &m);
                   }),
              StatusIs(absl::StatusCode::kPermissionDenied, _));
}

TEST_F(JobServiceTest, AdminManagesTenantsAndKeys) {
  TenantKey a = MakeTenant("a");
  v1::CreateTenantRequest dup;
  dup.set_display_name("a");
  v1::Tenant t;
  EXPECT_THAT(Call(kAdminKey,
                   [&](grpc::ClientContext* c) {
                     return admin_->CreateTenant(c, dup, &t);
                   }),
              StatusIs(absl::StatusCode::kAlreadyExists, _));
  v1::CreateTenantRequest bad;
  bad.set_display_name("b");
  bad.set_fair_share_weight(-1);
  EXPECT_EQ(InfoOf(Call(kAdminKey,
                        [&](grpc::ClientContext* c) {
                          return admin_->CreateTenant(c, bad, &t);
                        }))
                .field(),
            "fair_share_weight");
  v1::UpdateTenantRequest up;
  up.set_tenant_id(a.tenant_id);
  up.set_fair_share_weight(3);
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->UpdateTenant(c, up, &t);
  }));
  EXPECT_EQ(t.fair_share_weight(), 3);
  // A second key; listing never shows secrets.
  v1::CreateApiKeyRequest kreq;
  kreq.set_tenant_id(a.tenant_id);
  v1::CreateApiKeyResponse kresp;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->CreateApiKey(c, kreq, &kresp);
  }));
  EXPECT_EQ(kresp.secret().substr(0, 4), "ftk_");
  EXPECT_EQ(kresp.api_key().prefix(), kresp.secret().substr(0, 12));
  v1::ListApiKeysRequest lk;
  lk.set_tenant_id(a.tenant_id);
  v1::ListApiKeysResponse keys;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListApiKeys(c, lk, &keys);
  }));
  EXPECT_EQ(keys.api_keys_size(), 2);
  EXPECT_EQ(keys.DebugString().find(kresp.secret()), std::string::npos);
  v1::ListTenantsRequest lt;
  lt.set_page_size(1);
  v1::ListTenantsResponse tenants;
  ASSERT_OK(Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin_->ListTenants(c, lt, &tenants);
  }));
  EXPECT_EQ(tenants.tenants_size(), 1);
  EXPECT_EQ(tenants.tenants(0).id(), a.tenant_id);
  v1::GetTenantRequest gt;
  gt.set_tenant_id("tenant-aaaaaaaaaaaaaaaaaaaaaaaa");
  EXPECT_THAT(Call(kAdminKey,
                   [&](grpc::ClientContext* c) {
                     return admin_->GetTenant(c, gt, &t);
                   }),
              StatusIs(absl::StatusCode::kNotFound, _));
}

// CreateJob is finished by the store's commit callback, not by a waiting
// thread: a shutdown with calls in flight still answers every one of them,
// and every acknowledged job is there after a restart.
TEST_F(JobServiceTest, ShutdownAnswersCreateJobCallsInFlight) {
  TenantKey a = MakeTenant("a");
  constexpr int kThreads = 16;
  std::atomic<bool> stop{false};
  std::vector<std::vector<std::string>> acked(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; !stop.load(); ++n) {
        v1::CreateJobRequest req = JobRequest(a);
        req.set_request_id(absl::StrCat("t", i, "-", n));
        absl::StatusOr<v1::Job> job = CreateJob(a, req);
        if (job.ok()) {
          acked[i].push_back(job->id());
          continue;
        }
        // Refused or cut off by the shutdown, never anything else.
        EXPECT_THAT(job.status().code(),
                    ::testing::AnyOf(absl::StatusCode::kUnavailable,
                                     absl::StatusCode::kCancelled))
            << job.status();
        return;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  server_->Shutdown();
  stop = true;
  for (auto& t : threads) t.join();
  server_->Wait();
  ASSERT_OK(StartServer());
  size_t total = 0;
  for (const auto& ids : acked) {
    total += ids.size();
    for (const std::string& id : ids) {
      v1::GetJobRequest get;
      get.set_job_id(id);
      v1::Job out;
      EXPECT_OK(Call(a.key, [&](grpc::ClientContext* c) {
        return jobs_->GetJob(c, get, &out);
      }));
    }
  }
  EXPECT_GT(total, 0u);
}

TEST_F(JobServiceTest, JobsSurviveARestartOnTheSameDatabase) {
  TenantKey a = MakeTenant("a");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  ASSERT_OK(StartServer());
  v1::GetJobRequest get;
  get.set_job_id(job.id());
  v1::Job out;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return jobs_->GetJob(c, get, &out);
  }));
  EXPECT_EQ(out.state(), v1::JOB_STATE_QUEUED);
}

}  // namespace
}  // namespace ftune::server::testing

namespace ftune::server::testing {
namespace {

// The services wired together in SchedulerServer: a file uploaded through
// FileService is usable by CreateJob, and WatchJob follows the job to the
// end through the store's commit fan-out.
TEST_F(JobServiceTest, UploadCreateAndWatchThroughTheWholeServer) {
  const TenantKey t = MakeTenant("wired");
  auto files = v1::FileService::NewStub(channel_);
  std::string data;
  for (int i = 0; i < 20; ++i) {
    data += absl::StrCat(R"({"messages":[{"role":"user","content":"q)", i,
                         R"("},{"role":"assistant","content":"a)", i, R"("}]})",
                         "\n");
  }
  v1::File uploaded;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t.key);
    auto writer = files->UploadFile(&ctx, &uploaded);
    v1::UploadFileRequest meta;
    meta.mutable_metadata()->set_filename("train.jsonl");
    meta.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
    ASSERT_TRUE(writer->Write(meta));
    v1::UploadFileRequest chunk;
    chunk.set_chunk(data);
    ASSERT_TRUE(writer->Write(chunk));
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(uploaded.size_bytes(), static_cast<int64_t>(data.size()));

  v1::CreateJobRequest req = JobRequest(t);
  req.mutable_spec()->set_training_file(uploaded.id());
  absl::StatusOr<v1::Job> job = CreateJob(t, req);
  ASSERT_OK(job.status());

  grpc::ClientContext watch_ctx;
  watch_ctx.AddMetadata("authorization", "Bearer " + t.key);
  v1::WatchJobRequest wreq;
  wreq.set_job_id(job->id());
  auto reader = jobs_->WatchJob(&watch_ctx, wreq);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ASSERT_TRUE(msg.has_job());
  EXPECT_EQ(msg.job().state(), v1::JOB_STATE_QUEUED);

  v1::CancelJobRequest creq;
  creq.set_job_id(job->id());
  v1::Job cancelled;
  ASSERT_OK(Call(t.key, [&](grpc::ClientContext* c) {
    return jobs_->CancelJob(c, creq, &cancelled);
  }));
  // The stream reports the change and ends after the terminal state.
  bool saw_cancelled = false;
  int64_t last_sequence = msg.sequence();
  while (reader->Read(&msg)) {
    EXPECT_GE(msg.sequence(), last_sequence);
    last_sequence = msg.sequence();
    if (msg.has_job() && msg.job().state() == v1::JOB_STATE_CANCELLED)
      saw_cancelled = true;
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(saw_cancelled);
}

}  // namespace
}  // namespace ftune::server::testing

namespace ftune::server::testing {
namespace {

// Reads a whole DownloadAdapterFile stream from `offset`; the chunks must
// be contiguous.
absl::StatusOr<std::string> DownloadAdapterFile(v1::JobService::Stub& jobs,
                                                const std::string& key,
                                                const std::string& job_id,
                                                const std::string& path,
                                                int64_t offset = 0) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + key);
  v1::DownloadAdapterFileRequest req;
  req.set_job_id(job_id);
  req.set_path(path);
  req.set_offset(offset);
  auto reader = jobs.DownloadAdapterFile(&ctx, req);
  std::string out;
  v1::DownloadAdapterFileResponse chunk;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != offset + static_cast<int64_t>(out.size())) {
      return absl::InternalError(absl::StrCat("gap at ", chunk.offset()));
    }
    out += chunk.chunk();
  }
  FTUNE_RETURN_IF_ERROR(rpc::FromGrpcStatus(reader->Finish(), &ctx));
  return out;
}

std::string BodyOrError(const absl::StatusOr<std::string>& body) {
  return body.ok() ? *body : "error: " + body.status().ToString();
}

// A SUCCEEDED job's adapter files come back byte for byte; nothing else on
// storage can be named, and neither can another tenant's adapter.
TEST_F(JobServiceTest, DownloadAdapterFileServesOnlyTheRecordedFiles) {
  const TenantKey a = MakeTenant("a");
  const TenantKey b = MakeTenant("b");
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(a, JobRequest(a)));
  // Not finished yet: no adapter.
  absl::Status st =
      DownloadAdapterFile(*jobs_, a.key, job.id(), "adapter_config.json")
          .status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr("JOB_STATE_QUEUED")));
  EXPECT_EQ(InfoOf(st).current_state(), "JOB_STATE_QUEUED");

  // The worker's side: the adapter on storage, then SUCCEEDED through the
  // store with the files' sizes.
  const std::string dir = core::AdapterDir(a.tenant_id, job.id());
  std::string weights(2'500'000, '\0');  // 3 chunks of at most 1 MiB.
  for (size_t i = 0; i < weights.size(); ++i) {
    weights[i] = static_cast<char>((i * 7919) % 251);
  }
  const std::string config = R"({"r": 8, "lora_alpha": 16})";
  WriteFile(dir_.Sub("storage/" + dir + "/adapter_model.safetensors"), weights);
  WriteFile(dir_.Sub("storage/" + dir + "/adapter_config.json"), config);
  WriteFile(dir_.Sub("storage/secret.txt"), "not an adapter file");
  core::Worker w;
  w.hostname = "test";
  w.capabilities.gpus = 1;
  ASSERT_OK_AND_ASSIGN(core::Worker worker,
                       store().RegisterWorker(w, absl::Now() + absl::Hours(1)));
  ASSERT_OK_AND_ASSIGN(
      core::Job running,
      store().GrantLease(job.id(), 1, worker.id, absl::Now() + absl::Hours(1)));
  core::AttemptEnd end;
  end.outcome = core::AttemptOutcome::kSucceeded;
  end.adapter.path = dir;
  end.adapter.files = {
      {"adapter_config.json", static_cast<int64_t>(config.size()), "c"},
      {"adapter_model.safetensors", static_cast<int64_t>(weights.size()), "w"}};
  ASSERT_OK(store().EndAttempt(job.id(), running.attempt, worker.id, end));

  EXPECT_EQ(BodyOrError(DownloadAdapterFile(*jobs_, a.key, job.id(),
                                            "adapter_model.safetensors")),
            weights);
  EXPECT_EQ(BodyOrError(DownloadAdapterFile(*jobs_, a.key, job.id(),
                                            "adapter_config.json")),
            config);
  // Resuming at an offset, and at the very end (an empty, successful
  // stream).
  EXPECT_EQ(
      BodyOrError(DownloadAdapterFile(*jobs_, a.key, job.id(),
                                      "adapter_model.safetensors", 1'234'567)),
      weights.substr(1'234'567));
  EXPECT_EQ(BodyOrError(DownloadAdapterFile(
                *jobs_, a.key, job.id(), "adapter_config.json", config.size())),
            "");

  // Refusals: a path that is not normalised is malformed; a well-formed
  // one the record does not list is not found.
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, a.key, job.id(), "../../../secret.txt")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"..\"")));
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, a.key, job.id(), "secret.txt").status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no file")));
  EXPECT_THAT(DownloadAdapterFile(*jobs_, a.key, job.id(), "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("path")));
  st = DownloadAdapterFile(*jobs_, a.key, job.id(), "adapter_config.json",
                           config.size() + 1)
           .status();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kOutOfRange, _));
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, a.key, job.id(), "adapter_config.json", -1)
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("offset")));
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, b.key, job.id(), "adapter_config.json")
          .status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, kAdminKey, job.id(), "adapter_config.json")
          .status(),
      StatusIs(absl::StatusCode::kPermissionDenied, _));

  // A file changed on storage since it was recorded is not served as if it
  // were the adapter.
  WriteFile(dir_.Sub("storage/" + dir + "/adapter_config.json"), "{}");
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, a.key, job.id(), "adapter_config.json")
          .status(),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("recorded size")));
  std::filesystem::remove(dir_.Sub("storage/" + dir + "/adapter_config.json"));
  EXPECT_THAT(
      DownloadAdapterFile(*jobs_, a.key, job.id(), "adapter_config.json")
          .status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

}  // namespace
}  // namespace ftune::server::testing
