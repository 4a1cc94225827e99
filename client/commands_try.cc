// `adapters try`: completions of a few prompts with a job's adapter, one of
// its checkpoints or its base model, through JobService.TryModel (a small
// try job the scheduler queues and runs like any job). Prints each prompt
// and its completion once the job has finished; with -o json|yaml the
// stream's messages.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/commands_internal.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace ftune::client {
namespace {

void PrintText(std::ostream& out, absl::string_view label,
               absl::string_view text) {
  out << "  " << label << ":\n";
  if (text.empty()) out << "    (empty)\n";
  if (text.empty()) return;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    out << "    " << line << "\n";
  }
}

// A prompts file: one JSON object a line, {"prompt": ...} or
// {"messages": [{"role", "content"}, ...]}; blank lines are skipped.
bool ReadPromptsFile(const CommandContext& c, const std::string& path,
                     v1::TryModelRequest* req) {
  std::ifstream in(path);
  if (!in) {
    c.output.err() << "ftunectl: " << path << ": cannot be read\n";
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto bad = [&](const std::string& why) {
      c.output.err() << "ftunectl: " << path << ": line " << n << ": " << why
                     << "\n";
      return false;
    };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) return bad("not a JSON object");
    v1::TryPrompt* p = req->add_prompts();
    if (j.contains("prompt")) {
      if (!j["prompt"].is_string()) return bad("prompt: must be a string");
      p->set_prompt(j["prompt"].get<std::string>());
    } else if (j.contains("messages") && j["messages"].is_array()) {
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.value("role", nlohmann::json()).is_string() ||
            !m.value("content", nlohmann::json()).is_string()) {
          return bad("messages: each needs string role and content");
        }
        v1::TryMessage* msg = p->add_messages();
        msg->set_role(m["role"].get<std::string>());
        msg->set_content(m["content"].get<std::string>());
      }
    } else {
      return bad("needs \"prompt\" or a \"messages\" list");
    }
  }
  return true;
}

}  // namespace

int AdaptersTry(const CommandContext& c) {
  v1::TryModelRequest req;
  req.set_job_id(c.arg(0));
  const bool base = c.flags().GetBool("base");
  if (base && c.flags().Has("checkpoint")) {
    return UsageFailure(c, "give at most one of --checkpoint and --base");
  }
  if (auto step = c.flags().GetInt("checkpoint")) {
    req.set_source(v1::TRY_SOURCE_CHECKPOINT);
    req.set_checkpoint_step(*step);
  } else if (base) {
    req.set_source(v1::TRY_SOURCE_BASE);
  } else {
    req.set_source(v1::TRY_SOURCE_ADAPTER);
  }
  const bool chat = c.flags().GetBool("chat");
  for (const std::string& text : c.flags().GetAll("prompt")) {
    v1::TryPrompt* p = req.add_prompts();
    if (chat) {
      v1::TryMessage* m = p->add_messages();
      m->set_role("user");
      m->set_content(text);
    } else {
      p->set_prompt(text);
    }
  }
  if (c.flags().Has("prompts") &&
      !ReadPromptsFile(c, c.flags().Get("prompts"), &req)) {
    return kExitError;
  }
  if (req.prompts().empty()) {
    return UsageFailure(c, "give --prompt TEXT (repeatable) or --prompts FILE");
  }
  v1::SampleConfig* g = req.mutable_generation();
  if (auto v = c.flags().GetInt("max-new-tokens")) g->set_max_new_tokens(*v);
  if (auto v = c.flags().GetDouble("temperature")) g->set_temperature(*v);
  if (auto v = c.flags().GetInt("top-k")) {
    g->set_top_k(static_cast<int32_t>(*v));
  }
  if (auto v = c.flags().GetDouble("top-p")) g->set_top_p(*v);
  if (auto v = c.flags().GetInt("seed")) {
    g->set_seed(static_cast<uint64_t>(*v));
  }
  for (const std::string& s : c.flags().GetAll("stop")) g->add_stop(s);

  auto stub = v1::JobService::NewStub(c.conn.channel());
  grpc::ClientContext ctx;
  c.conn.Prepare(&ctx, /*deadline=*/c.conn.timeout_set());
  auto reader = stub->TryModel(&ctx, req);
  v1::TryModelResponse msg;
  v1::Job last;
  std::vector<v1::JobSample> samples;
  std::ostream& err = c.output.err();
  std::string shown_state;
  while (reader->Read(&msg)) {
    if (c.output.structured()) c.output.Message(msg);
    if (msg.has_job()) {
      last = msg.job();
      const std::string state = JobStateName(last.state());
      if (!c.output.structured() && state != shown_state) {
        err << last.id() << ": " << state << "\n";
        shown_state = state;
      }
    } else if (msg.has_sample()) {
      samples.push_back(msg.sample());
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return ReportRpcError(status, ctx, err);
  if (last.state() != v1::JOB_STATE_SUCCEEDED) {
    err << "ftunectl: try job " << last.id() << " is "
        << JobStateName(last.state());
    if (!last.error().message().empty()) err << ": " << last.error().message();
    err << "\n";
    return kExitError;
  }
  if (c.output.structured()) return kExitOk;
  std::ostream& out = c.output.out();
  for (const v1::JobSample& s : samples) {
    out << "[" << s.index() + 1 << "/" << samples.size() << "]\n";
    PrintText(out, "prompt", s.prompt());
    PrintText(out, absl::StrCat("completion (", s.finish_reason(), ")"),
              s.completion());
  }
  return kExitOk;
}

}  // namespace ftune::client
