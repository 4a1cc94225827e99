#include "client/flags.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/config.h"
#include "common/contract/limits.h"
#include "common/contract/train_spec.h"

namespace ftune::client {
namespace {

FlagSpec Str(std::string name, std::string value_name, std::string help) {
  return {std::move(name), FlagType::kString, false, std::move(value_name),
          std::move(help)};
}
FlagSpec Int(std::string name, std::string help,
             FlagType type = FlagType::kInt32) {
  return {std::move(name), type, false, "N", std::move(help)};
}
FlagSpec Dbl(std::string name, std::string value_name, std::string help) {
  return {std::move(name), FlagType::kDouble, false, std::move(value_name),
          std::move(help)};
}
FlagSpec Bool(std::string name, std::string help) {
  return {std::move(name), FlagType::kBool, false, "", std::move(help)};
}
FlagSpec Repeated(FlagSpec spec) {
  spec.repeated = true;
  return spec;
}

namespace d = contract::defaults;

// "what (default X)", X from the one defaults table.
template <typename T>
std::string Help(absl::string_view what, T default_value) {
  return absl::StrCat(what, " (default ", default_value, ")");
}

// --page-size, --page-token and --all of every list command, after `extra`.
std::vector<FlagSpec> ListFlags(std::vector<FlagSpec> extra = {}) {
  extra.push_back(Int("page-size", "items per page (server default if 0)"));
  extra.push_back(
      Str("page-token", "TOKEN", "continue from a previous page's token"));
  extra.push_back(Bool("all", "fetch every page, not just the first"));
  return extra;
}

std::vector<CommandSpec> BuildCommands() {
  const FlagSpec quota_queued =
      Int("max-queued-jobs", "jobs QUEUED or PAUSED at once (0 = unlimited)");
  const FlagSpec quota_running =
      Int("max-running-jobs", "jobs RUNNING at once (0 = unlimited)");
  const FlagSpec quota_gpus =
      Int("max-gpus", "GPUs held by running jobs (0 = unlimited)");
  return {
      {"status", "", {}, "health and services of the server", {}},

      {"tenants",
       "create",
       {"NAME"},
       "create a tenant (admin key); prints its id",
       {Dbl("weight", "W", "fair-share weight in (0, 1000] (default 1)"),
        quota_queued, quota_running, quota_gpus}},
      {"tenants", "list", {}, "list tenants (admin key)", ListFlags()},
      {"tenants", "get", {"TENANT_ID"}, "show one tenant (admin key)", {}},
      {"tenants",
       "update",
       {"TENANT_ID"},
       "change a tenant's fair-share weight (admin key)",
       {Dbl("weight", "W", "new fair-share weight in (0, 1000]")}},

      {"keys",
       "create",
       {},
       "create an API key for a tenant (admin key); prints the secret once",
       {Str("tenant", "TENANT_ID", "the tenant the key acts for (required)"),
        Str("description", "TEXT", "label of the key, e.g. \"ci pipeline\"")}},
      {"keys",
       "list",
       {},
       "list API keys, of one tenant or of all (admin key)",
       ListFlags({Str("tenant", "TENANT_ID", "only this tenant's keys"),
                  Bool("include-revoked", "also list revoked keys")})},
      {"keys", "revoke", {"KEY_ID"}, "revoke an API key (admin key)", {}},

      {"quotas",
       "get",
       {"TENANT_ID"},
       "show a tenant's quota and usage (admin key)",
       {}},
      {"quotas",
       "set",
       {"TENANT_ID"},
       "change a tenant's quota; limits not given keep their value",
       {quota_queued, quota_running, quota_gpus}},

      {"workers",
       "list",
       {},
       "list workers (admin key)",
       ListFlags({Repeated(Str("state", "STATE",
                               "only workers in this state (active, "
                               "draining, drained, lost); repeatable"))})},
      {"workers",
       "drain",
       {"WORKER_ID"},
       "stop giving a worker new jobs (admin key)",
       {}},
      {"workers",
       "undrain",
       {"WORKER_ID"},
       "make a drained worker active again (admin key)",
       {}},

      {"files",
       "upload",
       {"PATH"},
       "upload a JSONL dataset; prints its id",
       {Str("purpose", "PURPOSE",
            "fine-tune (training, the default) or validation"),
        Str("filename", "NAME", "name to store (default: PATH's base name)")}},
      {"files",
       "list",
       {},
       "list your files",
       ListFlags({Str("purpose", "PURPOSE",
                      "only files of this purpose (fine-tune, validation)")})},
      {"files", "get", {"FILE_ID"}, "show one file", {}},
      {"files",
       "download",
       {"FILE_ID"},
       "download a file's contents (to stdout by default)",
       {FlagSpec{"output-file", FlagType::kString, false, "PATH",
                 "write to PATH instead of stdout", 'o'}}},
      {"files", "delete", {"FILE_ID"}, "delete a file", {}},

      {"models", "list", {}, "list the base models", ListFlags()},
      {"models", "get", {"NAME"}, "show one base model", {}},

      {"jobs",
       "create",
       {},
       "create a fine-tuning job; prints its id",
       {Str("model", "NAME", "base model (required)"),
        Str("training-file", "FILE_ID", "training dataset (required)"),
        Str("validation-file", "FILE_ID", "evaluation dataset"),
        Dbl("validation-split", "FRACTION",
            "hold out this fraction of the training file, in (0, 0.5]"),
        Str("method", "METHOD", "lora (default), qlora or full"),
        Dbl("epochs", "N",
            Help("passes over the data, may be fractional", d::kEpochs)),
        Int("max-steps", "exact number of optimizer steps instead of epochs",
            FlagType::kInt64),
        Dbl("learning-rate", "X", Help("peak learning rate", d::kLearningRate)),
        Str("lr-scheduler", "NAME",
            "linear (default), cosine or constant decay after warmup"),
        Int("warmup-steps", "linear warmup steps", FlagType::kInt64),
        Dbl("warmup-ratio", "X",
            Help("warmup as a fraction of the total steps", d::kWarmupRatio)),
        Int("batch-size", Help("micro-batch size", d::kBatchSize)),
        Int("gradient-accumulation-steps",
            Help("micro-batches per optimizer step",
                 d::kGradientAccumulationSteps)),
        Int("max-seq-length",
            absl::StrCat("tokens per sequence (default: the smaller of ",
                         d::kMaxSeqLengthCap, " and the model's)")),
        Bool("packing",
             "pack several examples into each sequence "
             "(--packing=false to turn off; default off)"),
        Str("overlength-policy", "POLICY",
            "truncate (default) or drop examples longer than max-seq-length"),
        Str("chat-template", "NAME",
            absl::StrCat(absl::StrJoin(contract::ChatTemplateNames(), ", "),
                         " or auto (default)")),
        Dbl("weight-decay", "X", Help("AdamW weight decay", d::kWeightDecay)),
        Dbl("max-grad-norm", "X",
            Help("gradient clipping norm, 0 = none", d::kMaxGradNorm)),
        Int("eval-every-steps",
            "evaluate every N steps (default: every epoch, or a tenth of "
            "max-steps)",
            FlagType::kInt64),
        Int("early-stopping-patience",
            "stop after N evaluations without improvement (default 0 = off)"),
        Bool("eval-on-start",
             "also evaluate before the first update (step 0): the base "
             "model's eval loss and task metrics as a baseline"),
        Int("checkpoint-every-steps",
            Help("checkpoint interval", d::kCheckpointEverySteps),
            FlagType::kInt64),
        Int("checkpoints-to-keep",
            Help("periodic checkpoints kept", d::kCheckpointsToKeep)),
        Int("log-every-steps",
            Help("one metric point every N steps", d::kLogEverySteps)),
        Bool("gradient-checkpointing",
             "recompute activations in backward: less memory, ~30% more "
             "compute (default on; --gradient-checkpointing=false)"),
        Bool("auto-reduce-batch-on-oom",
             "halve the micro-batch on out-of-memory (default on; "
             "--auto-reduce-batch-on-oom=false)"),
        Int("lora-rank", Help("adapter rank", d::kLoraRank)),
        Dbl("lora-alpha", "X", "adapter scaling numerator (default 2*rank)"),
        Dbl("lora-dropout", "P", Help("adapter dropout", d::kLoraDropout)),
        Str("target-modules", "LIST",
            "comma-separated, e.g. q_proj,v_proj (default all-linear)"),
        Str("quantization-type", "TYPE", "qlora: nf4 (default) or fp4"),
        Bool("double-quant",
             "qlora: quantize the scales too (default on; "
             "--double-quant=false)"),
        Int("quantization-block-size",
            Help("qlora: weights per scale, a power of two",
                 d::kQuantBlockSize)),
        Str("compute-dtype", "DTYPE",
            "qlora: fp32, bf16 or fp16 (default: chosen by the worker)"),
        Int("seed", "random seed (default: chosen by the server)",
            FlagType::kInt64),
        Str("suffix", "S", "tag in the adapter's name ([a-z0-9-])"),
        Str("objective", "NAME",
            "sft (default), or dpo / orpo on a preference file"),
        Str("preference-loss", "NAME", "dpo: sigmoid (default) or ipo"),
        Dbl("beta", "X",
            Help("dpo: how closely the policy stays to the base model",
                 d::kPreferenceBeta)),
        Dbl("label-smoothing", "X",
            "dpo with the sigmoid loss: assumed share of flipped pairs "
            "(conservative DPO; default 0)"),
        Dbl("orpo-lambda", "X",
            Help("orpo: weight of the odds-ratio term", d::kOrpoLambda)),
        Int("eval-samples",
            absl::StrCat("validation prompts completed at step 0 and every "
                         "evaluation, 0 = off (default ",
                         d::kEvalSamples, " with a validation source)")),
        Int("sample-max-new-tokens",
            Help("tokens per sample completion", d::kSampleMaxNewTokens),
            FlagType::kInt64),
        Dbl("sample-temperature", "X",
            "sample completions: 0 = greedy (default)"),
        Int("sample-top-k",
            "sample completions: keep the k likeliest tokens "
            "(default 0 = all)"),
        Dbl("sample-top-p", "P",
            Help("sample completions: nucleus sampling share", d::kTopP)),
        Dbl("sample-repetition-penalty", "X",
            Help("sample completions: penalty of seen tokens",
                 d::kRepetitionPenalty)),
        Int("sample-seed", "sample completions: seed of the draws (default 0)",
            FlagType::kInt64),
        Repeated(Str("sample-stop", "TEXT",
                     "sample completions: a stop sequence; repeatable")),
        Int("eval-task-examples",
            absl::StrCat("validation examples completed greedily and scored "
                         "at every evaluation (task metrics), 0 = off "
                         "(default ",
                         d::kEvalTaskExamples, " with a validation source)")),
        Int("task-max-new-tokens",
            Help("task metrics: tokens per completion", d::kTaskMaxNewTokens),
            FlagType::kInt64),
        Str("eval-pattern", "REGEX",
            "task metrics: RE2 pattern a completion should match "
            "(pattern_match share)"),
        Str("select-best-by", "METRIC",
            "adapter published: eval_loss (default), exact_match or "
            "pattern_match"),
        Int("priority",
            absl::StrCat("scheduling priority in ",
                         contract::RangeText(contract::range::kPriority),
                         " (default 0)")),
        Int("max-restarts",
            Help("retries after retryable failures", d::kMaxRestarts)),
        Int("gpus", Help("GPUs per attempt; 0 = CPU", d::kGpus)),
        Str("gpu-type", "TYPE", "required GPU model, e.g. H100"),
        Int("cpu-threads", "CPU threads for the trainer"),
        Int("processes",
            absl::StrCat("trainer processes (data-parallel ranks) of a CPU "
                         "job, ",
                         contract::RangeText(contract::range::kProcesses),
                         " (default 1; a GPU job runs one per GPU)")),
        Int("memory-bytes",
            "host memory reserved for the job (default 0 = none)",
            FlagType::kInt64),
        Repeated(Str("label", "KEY=VALUE", "label of the job; repeatable")),
        Str("request-id", "ID",
            "idempotency key (default: a random one, reused on retries)"),
        Str("spec-file", "PATH",
            "JobSpec in YAML or protobuf JSON; the flags above override it"),
        Bool("validate-only",
             "check the request and show the estimate; create nothing"),
        Bool("dry-run", "the same as --validate-only")}},
      {"jobs", "get", {"JOB_ID"}, "show one job", {}},
      {"jobs",
       "list",
       {},
       "list your jobs, newest first",
       ListFlags({Repeated(Str("state", "STATE",
                               "only jobs in this state (queued, running, "
                               "succeeded, ...); repeatable")),
                  Str("label-selector", "K=V,...",
                      "only jobs with all these labels")})},
      {"jobs", "cancel", {"JOB_ID"}, "cancel a job", {}},
      {"jobs", "pause", {"JOB_ID"}, "pause a job at a checkpoint", {}},
      {"jobs", "resume", {"JOB_ID"}, "resume a paused job", {}},
      {"jobs",
       "events",
       {"JOB_ID"},
       "list a job's events",
       ListFlags({Int("after", "only events after this sequence number",
                      FlagType::kInt64),
                  Repeated(Str("type", "TYPE",
                               "only events of this type (state_changed, "
                               "checkpoint_saved, ...); repeatable"))})},
      {"jobs",
       "metrics",
       {"JOB_ID"},
       "list a job's metric points",
       ListFlags(
           {Int("after", "only points after this sequence number",
                FlagType::kInt64),
            Int("attempt", "only points of this attempt"),
            Int("min-step", "only points at or after this step",
                FlagType::kInt64),
            Int("max-step", "only points at or before this step",
                FlagType::kInt64),
            Str("format", "csv",
                "csv: every page as comma-separated values (for "
                "spreadsheets), whatever --output says"),
            FlagSpec{"output-file", FlagType::kString, false, "PATH",
                     "with --format csv: write to PATH, not stdout", 'o'}})},
      {"jobs",
       "checkpoints",
       {"JOB_ID"},
       "list a job's checkpoints",
       ListFlags()},
      {"jobs",
       "samples",
       {"JOB_ID"},
       "show a job's sample completions: prompt, expected and generated, "
       "step 0 next to the latest",
       {Int("step", "only this step's samples", FlagType::kInt64)}},
      {"jobs",
       "watch",
       {"JOB_ID"},
       "follow a job until it ends; exit 0 if it succeeded, 1 if not",
       {Int("after",
            "first replay the records after this sequence number (0 = the "
            "whole history)",
            FlagType::kInt64),
        Bool("no-metrics", "do not show metric points"),
        Bool("no-progress",
             "print a line per metric point even on a terminal, instead of "
             "the live progress line")}},
      {"jobs",
       "logs",
       {"JOB_ID"},
       "print the trainer's log of an attempt",
       {Int("attempt", "which attempt (default: the latest)"),
        Int("offset",
            "start at this byte; negative: that many bytes from the end",
            FlagType::kInt64),
        Bool("follow", "keep printing until the attempt ends")}},

      {"adapters",
       "download",
       {"JOB_ID"},
       "download a succeeded job's adapter files, checking each SHA-256",
       {FlagSpec{"output-dir", FlagType::kString, false, "DIR",
                 "directory to write (default: ./<adapter name>)", 'o'}}},
      {"adapters",
       "try",
       {"JOB_ID"},
       "generate completions with a job's adapter (or --checkpoint STEP, "
       "or --base) and print them",
       {Repeated(Str("prompt", "TEXT", "a prompt (repeat for more)")),
        Str("prompts", "FILE",
            "JSONL prompts: {\"prompt\": ...} or {\"messages\": [...]} "
            "a line"),
        Bool("chat",
             "send each --prompt as a user message, rendered with the "
             "job's chat template"),
        Int("checkpoint", "use the checkpoint of this step", FlagType::kInt64),
        Bool("base", "use the job's base model without its adapter"),
        Int("max-new-tokens", "most tokens per completion (default 64)",
            FlagType::kInt64),
        Dbl("temperature", "T", "0 (default) = greedy"),
        Int("top-k", "keep the k most likely tokens (0 = all)"),
        Dbl("top-p", "P", "nucleus sampling (default 1 = off)"),
        Int("seed", "seed of the draws when temperature > 0", FlagType::kInt64),
        Repeated(Str("stop", "TEXT", "a stop sequence (repeat)"))}},

      {"webhooks",
       "create",
       {"URL"},
       "register an https endpoint for job events; prints its signing "
       "secret once",
       {Repeated(Str("event-type", "TYPE",
                     "an event to send (repeat): fine_tuning.job.succeeded, "
                     ".failed, .cancelled, .paused, "
                     "ftune.job.checkpoint_saved, ftune.job.eval_improved")),
        Str("description", "TEXT", "a note for people (at most 512 chars)")}},
      {"webhooks", "list", {}, "list your webhook endpoints", ListFlags()},
      {"webhooks", "get", {"WEBHOOK_ID"}, "show one webhook endpoint", {}},
      {"webhooks",
       "delete",
       {"WEBHOOK_ID"},
       "delete an endpoint and its delivery log",
       {}},
      {"webhooks",
       "deliveries",
       {"WEBHOOK_ID"},
       "an endpoint's delivery log, newest first",
       ListFlags()},
      {"webhooks",
       "update",
       {"WEBHOOK_ID"},
       "disable or enable an endpoint, or change its event types or "
       "description",
       {Bool("disabled",
             "--disabled: send nothing (pending deliveries wait); "
             "--disabled=false: send again"),
        Repeated(Str("event-type", "TYPE",
                     "the event types from now on (repeat; replaces them)")),
        Str("description", "TEXT", "a note for people (at most 512 chars)")}},
      {"webhooks",
       "rotate-secret",
       {"WEBHOOK_ID"},
       "a new signing secret (printed once); the old one also signs for "
       "--grace",
       {Str("grace", "DURATION",
            "how long the old secret keeps signing too, e.g. 1h (default "
            "24h, at most 168h; 0s = none)")}},
      {"webhooks",
       "redeliver",
       {"WEBHOOK_ID", "DELIVERY_ID"},
       "send a delivery's event again (same webhook-id and body)",
       {}},
  };
}

std::vector<FlagSpec> BuildGlobalFlags() {
  return {
      Str("address", "HOST:PORT",
          "server address (default $FTUNE_ADDRESS, $FTUNE_ENDPOINT, "
          "127.0.0.1:50051); --endpoint is an alias"),
      Str("api-key-file", "PATH",
          "file holding the API key or admin key (default $FTUNE_API_KEY)"),
      Str("timeout", "SECONDS", "deadline of each call (default 30)"),
      Str("output", "FORMAT",
          "text (default; table is the same), json or yaml"),
      Str("config", "PATH",
          "config file (default $FTUNE_CONFIG, else "
          "~/.config/ftune/config.yaml if it exists)"),
      Str("profile", "NAME",
          "profile of the config file to use (default $FTUNE_PROFILE)"),
      Bool("tls", "use TLS with the system's root certificates"),
      Str("tls-ca", "PATH", "use TLS, trusting these root certificates"),
      Str("tls-cert", "PATH", "client certificate for mutual TLS"),
      Str("tls-key", "PATH", "client private key for mutual TLS"),
      Str("tls-server-name", "NAME", "expected name in the server certificate"),
      FlagSpec{"help", FlagType::kBool, false, "", "show usage", 'h'},
  };
}

const FlagSpec* FindFlag(const std::vector<FlagSpec>& specs,
                         absl::string_view name, char short_name) {
  for (const FlagSpec& spec : specs) {
    if (short_name != 0 ? spec.short_name == short_name : spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

bool IsNoun(absl::string_view word) {
  for (const CommandSpec& c : Commands()) {
    if (c.noun == word) return true;
  }
  return false;
}

const CommandSpec* FindCommand(absl::string_view noun, absl::string_view verb) {
  for (const CommandSpec& c : Commands()) {
    if (c.noun == noun && c.verb == verb) return &c;
  }
  return nullptr;
}

std::vector<std::string> VerbsOf(absl::string_view noun) {
  std::vector<std::string> verbs;
  for (const CommandSpec& c : Commands()) {
    if (c.noun == noun) verbs.push_back(c.verb);
  }
  return verbs;
}

absl::Status UsageError(absl::string_view message, absl::string_view topic) {
  std::string help = topic.empty()
                         ? "ftunectl --help"
                         : absl::StrCat("ftunectl ", topic, " --help");
  return absl::InvalidArgumentError(
      absl::StrCat(message, " (see '", help, "')"));
}

// Checks `value` against the flag's type; the message names the flag.
absl::Status CheckValue(const FlagSpec& spec, const std::string& value,
                        absl::string_view topic) {
  bool ok = true;
  switch (spec.type) {
    case FlagType::kString:
      break;
    case FlagType::kInt32: {
      int32_t v;
      ok = absl::SimpleAtoi(value, &v);
      break;
    }
    case FlagType::kInt64: {
      int64_t v;
      ok = absl::SimpleAtoi(value, &v);
      break;
    }
    case FlagType::kDouble: {
      double v;
      ok = absl::SimpleAtod(value, &v);
      break;
    }
    case FlagType::kBool:
      ok = value == "true" || value == "false";
      break;
  }
  if (ok) return absl::OkStatus();
  const char* want = spec.type == FlagType::kDouble ? "a number"
                     : spec.type == FlagType::kBool ? "true or false"
                                                    : "an integer";
  return UsageError(
      absl::StrCat("--", spec.name, ": \"", value, "\" is not ", want), topic);
}

// Applies one global flag to `options`.
absl::Status ApplyGlobal(const FlagSpec& spec, const std::string& value,
                         GlobalOptions* options) {
  const std::string& name = spec.name;
  if (name == "address") {
    if (value.empty()) return UsageError("--address needs HOST:PORT", "");
    options->address = value;
  } else if (name == "api-key-file") {
    options->api_key_file = value;
    options->api_key.clear();
  } else if (name == "timeout") {
    auto timeout = ParseTimeout(value);
    if (!timeout.ok()) {
      return UsageError(absl::StrCat("--timeout: ", timeout.status().message()),
                        "");
    }
    options->timeout = *timeout;
    options->timeout_set = true;
  } else if (name == "output") {
    auto output = ParseOutputFormat(value);
    if (!output.ok()) {
      return UsageError(absl::StrCat("--output: ", output.status().message()),
                        "");
    }
    options->output = *output;
  } else if (name == "tls") {
    options->tls = value == "true";
  } else if (name == "tls-ca") {
    options->tls_ca = value;
    options->tls = true;
  } else if (name == "tls-cert") {
    options->tls_cert = value;
    options->tls = true;
  } else if (name == "tls-key") {
    options->tls_key = value;
    options->tls = true;
  } else if (name == "tls-server-name") {
    options->tls_server_name = value;
    options->tls = true;
  }
  return absl::OkStatus();
}

void AppendFlagLines(const std::vector<FlagSpec>& flags, std::ostream& out) {
  size_t width = 0;
  std::vector<std::string> heads;
  for (const FlagSpec& f : flags) {
    std::string head = "  ";
    if (f.short_name != 0)
      absl::StrAppend(&head, "-", std::string(1, f.short_name), ", ");
    absl::StrAppend(&head, "--", f.name);
    if (!f.value_name.empty()) absl::StrAppend(&head, " ", f.value_name);
    width = std::max(width, head.size());
    heads.push_back(std::move(head));
  }
  for (size_t i = 0; i < flags.size(); ++i) {
    out << heads[i] << std::string(width + 2 - heads[i].size(), ' ')
        << flags[i].help << "\n";
  }
}

std::string CommandLineOf(const CommandSpec& c) {
  std::string line = c.FullName();
  for (const std::string& arg : c.args) absl::StrAppend(&line, " ", arg);
  if (!c.flags.empty()) absl::StrAppend(&line, " [flags]");
  return line;
}

void AppendCommandList(absl::string_view noun, std::ostream& out) {
  std::vector<const CommandSpec*> list;
  size_t width = 0;
  for (const CommandSpec& c : Commands()) {
    if (!noun.empty() && c.noun != noun) continue;
    list.push_back(&c);
    width = std::max(width, CommandLineOf(c).size());
  }
  for (const CommandSpec* c : list) {
    std::string line = CommandLineOf(*c);
    out << "  " << line << std::string(width + 2 - line.size(), ' ')
        << c->summary << "\n";
  }
}

}  // namespace

std::string CommandSpec::FullName() const {
  return verb.empty() ? noun : absl::StrCat(noun, " ", verb);
}

const std::vector<CommandSpec>& Commands() {
  static const auto* commands = new std::vector<CommandSpec>(BuildCommands());
  return *commands;
}

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>(BuildGlobalFlags());
  return *flags;
}

void FlagValues::Add(const std::string& name, std::string value) {
  values_[name].push_back(std::move(value));
}

bool FlagValues::Has(absl::string_view name) const {
  return values_.find(name) != values_.end();
}

std::string FlagValues::Get(absl::string_view name,
                            const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> FlagValues::GetAll(absl::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

std::optional<int64_t> FlagValues::GetInt(absl::string_view name) const {
  int64_t v;
  if (!Has(name) || !absl::SimpleAtoi(Get(name), &v)) return std::nullopt;
  return v;
}

std::optional<double> FlagValues::GetDouble(absl::string_view name) const {
  double v;
  if (!Has(name) || !absl::SimpleAtod(Get(name), &v)) return std::nullopt;
  return v;
}

bool FlagValues::GetBool(absl::string_view name) const {
  return Get(name, "false") == "true";
}

Environment ProcessEnvironment() {
  Environment env;
  for (const char* name :
       {"FTUNE_ADDRESS", "FTUNE_ENDPOINT", "FTUNE_API_KEY",
        "FTUNE_API_KEY_FILE", "FTUNE_CONFIG", "FTUNE_PROFILE", "FTUNE_TIMEOUT",
        "FTUNE_OUTPUT", "FTUNE_TLS", "FTUNE_TLS_CA", "FTUNE_TLS_CERT",
        "FTUNE_TLS_KEY", "FTUNE_TLS_SERVER_NAME", "XDG_CONFIG_HOME", "HOME"}) {
    if (const char* value = std::getenv(name); value != nullptr) {
      env[name] = value;
    }
  }
  return env;
}

absl::StatusOr<Invocation> ParseCommandLine(
    const std::vector<std::string>& args, const Environment& env) {
  Invocation inv;
  // Global flags are applied after the config file and the environment,
  // which they override; the config file's name is itself a flag.
  std::vector<std::pair<const FlagSpec*, std::string>> global_flags;
  std::string config_flag;
  std::string profile_flag;

  std::vector<std::string> words;  // command words, then its arguments
  bool help_command = false;       // "ftunectl help ..."
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const std::string topic =
        inv.command != nullptr ? inv.command->FullName() : "";
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      if (inv.command == nullptr && !help_command) {
        if (words.empty() && arg == "help") {
          help_command = true;
          continue;
        }
        words.push_back(arg);
        if (words.size() == 1) {
          if (const CommandSpec* c = FindCommand(arg, ""); c != nullptr) {
            inv.command = c;
            words.clear();
          } else if (!IsNoun(arg)) {
            return UsageError(absl::StrCat("unknown command \"", arg, "\""),
                              "");
          }
        } else {
          inv.command = FindCommand(words[0], words[1]);
          if (inv.command == nullptr) {
            return UsageError(
                absl::StrCat("unknown command \"", words[0], " ", words[1],
                             "\"; \"", words[0], "\" has: ",
                             absl::StrJoin(VerbsOf(words[0]), ", ")),
                words[0]);
          }
          words.clear();
        }
      } else {
        words.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    // A flag: "--name", "--name=value", "-x".
    std::string name;
    std::optional<std::string> inline_value;
    char short_name = 0;
    if (arg[1] == '-') {
      name = arg.substr(2);
      if (size_t eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      if (name == "endpoint") name = "address";
    } else if (arg.size() == 2) {
      short_name = arg[1];
    } else {
      return UsageError(absl::StrCat("unknown flag ", arg), topic);
    }
    bool is_global = true;
    const FlagSpec* spec = FindFlag(GlobalFlags(), name, short_name);
    if (spec == nullptr && inv.command != nullptr) {
      spec = FindFlag(inv.command->flags, name, short_name);
      is_global = false;
    }
    if (spec == nullptr) {
      return UsageError(
          inv.command != nullptr
              ? absl::StrCat("unknown flag ", arg, " for \"", topic, "\"")
              : absl::StrCat("unknown flag ", arg),
          topic.empty() && !words.empty() ? words[0] : topic);
    }
    std::string value;
    if (spec->type == FlagType::kBool) {
      value = inline_value.value_or("true");
    } else if (inline_value.has_value()) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return UsageError(
          absl::StrCat("flag --", spec->name, " needs a value",
                       spec->value_name.empty()
                           ? ""
                           : absl::StrCat(" (", spec->value_name, ")")),
          topic);
    }
    if (absl::Status s = CheckValue(*spec, value, topic); !s.ok()) return s;
    if (is_global) {
      if (spec->name == "help") {
        inv.help = value == "true";
      } else if (spec->name == "config") {
        if (value.empty()) return UsageError("--config needs a PATH", "");
        config_flag = value;
      } else if (spec->name == "profile") {
        if (value.empty()) return UsageError("--profile needs a NAME", "");
        profile_flag = value;
      } else {
        global_flags.emplace_back(spec, std::move(value));
      }
      continue;
    }
    if (!spec->repeated && inv.flags.Has(spec->name)) {
      return UsageError(
          absl::StrCat("flag --", spec->name, " given more than once"), topic);
    }
    inv.flags.Add(spec->name, std::move(value));
  }

  if (help_command || inv.help) {
    inv.help = true;
    if (inv.command != nullptr) {
      inv.help_topic = inv.command->FullName();
    } else if (!words.empty() && IsNoun(words[0])) {
      inv.help_topic = words.size() > 1 && FindCommand(words[0], words[1])
                           ? absl::StrCat(words[0], " ", words[1])
                           : words[0];
    }
    inv.command = nullptr;
    return inv;
  }
  if (inv.command == nullptr) {
    if (words.empty()) return UsageError("no command given", "");
    return UsageError(absl::StrCat("\"", words[0], "\" needs a subcommand: ",
                                   absl::StrJoin(VerbsOf(words[0]), ", ")),
                      words[0]);
  }
  const CommandSpec& c = *inv.command;
  if (words.size() < c.args.size()) {
    return UsageError(
        absl::StrCat("\"", c.FullName(), "\" needs ", c.args[words.size()]),
        c.FullName());
  }
  if (words.size() > c.args.size()) {
    return UsageError(
        absl::StrCat("unexpected argument \"", words[c.args.size()],
                     "\" for \"", c.FullName(), "\""),
        c.FullName());
  }
  inv.args = std::move(words);

  GlobalOptions& global = inv.global;
  if (absl::Status s =
          ApplyConfigAndEnvironment(config_flag, profile_flag, env, &global);
      !s.ok()) {
    return UsageError(s.message(), "");
  }
  for (const auto& [spec, value] : global_flags) {
    if (absl::Status s = ApplyGlobal(*spec, value, &global); !s.ok()) return s;
  }
  return inv;
}

std::string Usage(absl::string_view topic) {
  std::ostringstream out;
  const CommandSpec* command = nullptr;
  for (const CommandSpec& c : Commands()) {
    if (c.FullName() == topic) command = &c;
  }
  if (command != nullptr) {
    out << "usage: ftunectl " << CommandLineOf(*command) << "\n\n"
        << command->summary << "\n";
    if (!command->flags.empty()) {
      out << "\nflags:\n";
      AppendFlagLines(command->flags, out);
    }
    out << "\nglobal flags (--address, --api-key-file, --output, ...): "
           "see 'ftunectl --help'\n";
    return out.str();
  }
  if (!topic.empty() && IsNoun(topic)) {
    out << "usage: ftunectl " << topic << " COMMAND [args] [flags]\n\n"
        << "commands:\n";
    AppendCommandList(topic, out);
    out << "\nrun 'ftunectl " << topic
        << " COMMAND --help' for a command's flags\n";
    return out.str();
  }
  out << "usage: ftunectl [global flags] COMMAND [args] [flags]\n\n"
      << "commands:\n";
  AppendCommandList("", out);
  out << "\nglobal flags:\n";
  AppendFlagLines(GlobalFlags(), out);
  out << "\nenvironment: FTUNE_ADDRESS (or FTUNE_ENDPOINT), FTUNE_API_KEY, "
         "FTUNE_API_KEY_FILE, FTUNE_TIMEOUT, FTUNE_OUTPUT, FTUNE_TLS, "
         "FTUNE_TLS_CA,\n  FTUNE_TLS_CERT, FTUNE_TLS_KEY, "
         "FTUNE_TLS_SERVER_NAME, "
         "FTUNE_CONFIG, FTUNE_PROFILE\n"
         "precedence: flag, then environment, then config file, then "
         "default\n"
         "exit codes: 0 ok, 1 the server refused, 2 usage error, 3 server "
         "unreachable or deadline exceeded\n"
         "run 'ftunectl NOUN --help' or 'ftunectl NOUN COMMAND --help' for "
         "more\n";
  return out.str();
}

}  // namespace ftune::client
