// Model families at the API: a model is registered with its family's LoRA
// module names (the trainer's own family code parsed its config.json), and
// CreateJob validates target_modules against them and refuses a model the
// trainer cannot run, naming the reason (rpc_fixture.h: a real server).
#include "gmock/gmock.h"
#include "tests/server/rpc/rpc_fixture.h"

namespace ftune::server::testing {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

class ModelFamiliesApiTest : public RpcTest {
 protected:
  ModelFamiliesApiTest() { dispatch_ = false; }
  void SetUp() override {
    // tiny (Llama, from the fixture) and a Phi-3 with its chat template.
    WriteFile(dir_.Sub("storage/models/phi/config.json"),
              R"({"architectures": ["Phi3ForCausalLM"], "vocab_size": 256,
                  "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 4,
                  "max_position_embeddings": 512})");
    WriteFile(
        dir_.Sub("storage/models/phi/tokenizer_config.json"),
        R"({"chat_template": "{{'<|user|>\\n' + m + '<|end|>\\n'}}{{'<|assistant|>\\n'}}"})");
    MakeModelDir(dir_.Sub("storage/models/tiny"), 512,
                 "{% for m in messages %}<|im_start|>{% endfor %}");
    WriteFile(dir_.Sub("scheduler.json"),
              R"({"models": [{"name": "tiny"}, {"name": "phi"}]})");
    ASSERT_OK(StartServer());
  }
};

TEST_F(ModelFamiliesApiTest, TargetModulesAreTheFamilys) {
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  req.mutable_spec()->set_model("phi");
  req.mutable_spec()->mutable_lora()->add_target_modules("q_proj");
  absl::StatusOr<v1::Job> job = CreateJob(a, req);
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("unsupported target module \"q_proj\"; "
                                      "expected one of qkv_proj, o_proj, "
                                      "gate_up_proj, down_proj or "
                                      "all-linear")));
  EXPECT_EQ(InfoOf(job.status()).field(), "spec.lora.target_modules[0]");
  req.mutable_spec()->mutable_lora()->set_target_modules(0, "qkv_proj");
  EXPECT_OK(CreateJob(a, req));
  // The Llama model keeps the Llama names.
  v1::CreateJobRequest llama = JobRequest(a);
  llama.mutable_spec()->mutable_lora()->add_target_modules("qkv_proj");
  EXPECT_THAT(CreateJob(a, llama),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected one of q_proj, k_proj")));

  // ModelService shows the architecture and the detected template.
  v1::GetModelRequest get;
  get.set_name("phi");
  v1::Model model;
  ASSERT_OK(Call(a.key, [&](grpc::ClientContext* c) {
    return models_->GetModel(c, get, &model);
  }));
  EXPECT_EQ(model.architecture(), "Phi3ForCausalLM");
  EXPECT_EQ(model.default_chat_template(), "phi3");
  EXPECT_EQ(model.hidden_size(), 64);
}

// A model row the trainer cannot run (registered by an older scheduler
// that did not check) is refused at job creation, naming why.
TEST_F(ModelFamiliesApiTest, AnUnsupportedArchitectureIsRefusedAtCreate) {
  core::Model old;
  old.name = "mamba";
  old.directory = "models/mamba";
  old.metadata["architecture"] = "MambaForCausalLM";
  ASSERT_OK(store().UpsertModel(old).status());
  TenantKey a = MakeTenant("a");
  v1::CreateJobRequest req = JobRequest(a);
  req.mutable_spec()->set_model("mamba");
  absl::StatusOr<v1::Job> job = CreateJob(a, req);
  EXPECT_THAT(job,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("model mamba cannot be trained: architecture "
                                 "\"MambaForCausalLM\" is not supported "
                                 "(supported: LlamaForCausalLM")));
  EXPECT_EQ(InfoOf(job.status()).field(), "spec.model");
}

}  // namespace
}  // namespace ftune::server::testing
