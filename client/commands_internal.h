// What the commands_*.cc files share: the context a command runs in, the
// handlers RunFtunectl dispatches to, and helpers for unary and paged calls.
// Internal to client/.
#ifndef FTUNE_CLIENT_COMMANDS_INTERNAL_H_
#define FTUNE_CLIENT_COMMANDS_INTERNAL_H_

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/flags.h"
#include "client/output.h"
#include "client/rpc.h"
#include "ftune/v1/job.pb.h"

namespace ftune::client {

struct CommandContext {
  const Invocation& inv;
  const Connection& conn;
  Output& output;

  const std::string& arg(size_t i) const { return inv.args[i]; }
  const FlagValues& flags() const { return inv.flags; }
};

using CommandHandler = int (*)(const CommandContext&);

// Prints "ftunectl: <message>" and where to find usage; returns kExitUsage.
int UsageFailure(const CommandContext& c, absl::string_view message);

// One unary call: `call(ctx)` runs with auth metadata and the deadline; on
// failure the error is reported and its exit code returned, else kExitOk.
template <typename Call>
int Unary(const CommandContext& c, Call call) {
  grpc::ClientContext ctx;
  c.conn.Prepare(&ctx);
  grpc::Status status = call(&ctx);
  if (!status.ok()) return ReportRpcError(status, ctx, c.output.err());
  return kExitOk;
}

// A list call, page by page: sets page_size / page_token from the flags,
// appends every page to *all, and follows next_page_token with --all (or
// `all_pages`). Otherwise a remaining next_page_token is kept in *all (JSON,
// YAML) and mentioned on stderr (text).
template <typename Request, typename Response, typename Call>
int ListPages(const CommandContext& c, Request request, Call call,
              Response* all, bool all_pages = false) {
  if (auto size = c.flags().GetInt("page-size")) {
    request.set_page_size(static_cast<int32_t>(*size));
  }
  request.set_page_token(c.flags().Get("page-token"));
  const bool every_page = all_pages || c.flags().GetBool("all");
  for (;;) {
    Response page;
    int rc = Unary(
        c, [&](grpc::ClientContext* ctx) { return call(ctx, request, &page); });
    if (rc != kExitOk) return rc;
    all->MergeFrom(page);
    all->set_next_page_token(page.next_page_token());
    if (!every_page || page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  if (!all->next_page_token().empty() && !c.output.structured()) {
    c.output.err() << "(more: --page-token " << all->next_page_token()
                   << ", or --all)\n";
  }
  return kExitOk;
}

// Whether a broken stream is worth reopening: UNAVAILABLE, or CANCELLED
// (ftunectl never cancels its own calls, so that comes from a server that
// shuts down while the call is open).
bool Retryable(const grpc::Status& status);

// Reopening a stream after it broke: backoff between tries, and a window
// (--timeout, else 60 s) from the first failure since the last progress
// after which it gives up. Not thread-safe. (commands_watch.cc)
class Reconnector {
 public:
  Reconnector(const CommandContext& c, absl::string_view what);

  // Data arrived: the connection works again.
  void Progress();

  // Says on stderr that the stream broke, waits for the backoff and for the
  // channel to connect; false when the window is used up.
  bool Wait(const grpc::Status& status, absl::string_view resume);

 private:
  const CommandContext& c_;
  std::string what_;
  absl::Duration window_;
  absl::Duration backoff_;
  std::optional<absl::Time> failing_since_;
};

// commands_admin.cc
int TenantsCreate(const CommandContext& c);
int TenantsList(const CommandContext& c);
int TenantsGet(const CommandContext& c);
int TenantsUpdate(const CommandContext& c);
int KeysCreate(const CommandContext& c);
int KeysList(const CommandContext& c);
int KeysRevoke(const CommandContext& c);
int QuotasGet(const CommandContext& c);
int QuotasSet(const CommandContext& c);
int WorkersList(const CommandContext& c);
int WorkersDrain(const CommandContext& c);
int WorkersUndrain(const CommandContext& c);

// commands_files.cc
int FilesUpload(const CommandContext& c);
int FilesList(const CommandContext& c);
int FilesGet(const CommandContext& c);
int FilesDownload(const CommandContext& c);
int FilesDelete(const CommandContext& c);
int ModelsList(const CommandContext& c);
int ModelsGet(const CommandContext& c);

// commands_jobs.cc
int JobsCreate(const CommandContext& c);
int JobsGet(const CommandContext& c);
int JobsList(const CommandContext& c);
int JobsCancel(const CommandContext& c);
int JobsPause(const CommandContext& c);
int JobsResume(const CommandContext& c);
int JobsEvents(const CommandContext& c);
int JobsMetrics(const CommandContext& c);
int JobsCheckpoints(const CommandContext& c);
int JobsSamples(const CommandContext& c);

// Job formatting, shared by the job commands and watch (commands_jobs.cc).
std::string JobStateName(v1::JobState state);  // "RUNNING"
bool IsTerminal(v1::JobState state);
// Text of a job: "key: value" lines (or its JSON).
void PrintJob(const CommandContext& c, const v1::Job& job);
// One line for an event / a metric point, without a trailing newline.
std::string EventLine(const v1::JobEvent& event);
std::string MetricLine(const v1::MetricPoint& point, int64_t total_steps);

// commands_watch.cc
int JobsWatch(const CommandContext& c);
int JobsLogs(const CommandContext& c);

// commands_adapters.cc
int AdaptersDownload(const CommandContext& c);

// commands_try.cc
int AdaptersTry(const CommandContext& c);

// commands_webhooks.cc
int WebhooksCreate(const CommandContext& c);
int WebhooksList(const CommandContext& c);
int WebhooksGet(const CommandContext& c);
int WebhooksDelete(const CommandContext& c);
int WebhooksDeliveries(const CommandContext& c);
int WebhooksUpdate(const CommandContext& c);
int WebhooksRedeliver(const CommandContext& c);
int WebhooksRotateSecret(const CommandContext& c);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_COMMANDS_INTERNAL_H_
