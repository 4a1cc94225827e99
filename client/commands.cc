// Dispatch from a parsed command line to its handler, and `status`.
#include "client/commands.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/commands_internal.h"
#include "client/server_info.h"
#include "nlohmann/json.hpp"

namespace ftune::client {
namespace {

int ServerStatus(const CommandContext& c) {
  auto info = GetServerInfo(c.conn.channel(), c.conn.timeout());
  if (!info.ok()) {
    c.output.err() << "ftunectl: " << c.conn.address() << ": "
                   << info.status().message() << "\n";
    return ExitCodeFor(static_cast<grpc::StatusCode>(info.status().code()));
  }
  if (c.output.structured()) {
    // No proto describes ServerInfo; this is the same shape by hand.
    nlohmann::ordered_json json = {{"endpoint", c.conn.address()},
                                   {"health", info->health},
                                   {"services", info->services}};
    if (!c.inv.global.config_path.empty()) {
      json["config"] = c.inv.global.config_path;
      if (!c.inv.global.profile.empty()) {
        json["profile"] = c.inv.global.profile;
      }
    }
    c.output.JsonText(json.dump());
    return kExitOk;
  }
  // scripts/demo.sh and tests read these lines.
  c.output.out() << "endpoint: " << c.conn.address() << "\n"
                 << "health:   " << info->health << "\n"
                 << "services: " << absl::StrJoin(info->services, ", ") << "\n";
  if (!c.inv.global.config_path.empty()) {
    c.output.out() << "config:   " << c.inv.global.config_path
                   << (c.inv.global.profile.empty()
                           ? ""
                           : absl::StrCat(" (profile ", c.inv.global.profile,
                                          ")"))
                   << "\n";
  }
  return kExitOk;
}

const std::map<std::string, CommandHandler>& Handlers() {
  static const auto* handlers = new std::map<std::string, CommandHandler>{
      {"status", ServerStatus},
      {"tenants create", TenantsCreate},
      {"tenants list", TenantsList},
      {"tenants get", TenantsGet},
      {"tenants update", TenantsUpdate},
      {"keys create", KeysCreate},
      {"keys list", KeysList},
      {"keys revoke", KeysRevoke},
      {"quotas get", QuotasGet},
      {"quotas set", QuotasSet},
      {"workers list", WorkersList},
      {"workers drain", WorkersDrain},
      {"workers undrain", WorkersUndrain},
      {"files upload", FilesUpload},
      {"files list", FilesList},
      {"files get", FilesGet},
      {"files download", FilesDownload},
      {"files delete", FilesDelete},
      {"models list", ModelsList},
      {"models get", ModelsGet},
      {"jobs create", JobsCreate},
      {"jobs get", JobsGet},
      {"jobs list", JobsList},
      {"jobs cancel", JobsCancel},
      {"jobs pause", JobsPause},
      {"jobs resume", JobsResume},
      {"jobs events", JobsEvents},
      {"jobs metrics", JobsMetrics},
      {"jobs checkpoints", JobsCheckpoints},
      {"jobs samples", JobsSamples},
      {"jobs watch", JobsWatch},
      {"jobs logs", JobsLogs},
      {"adapters download", AdaptersDownload},
      {"adapters try", AdaptersTry},
      {"webhooks create", WebhooksCreate},
      {"webhooks list", WebhooksList},
      {"webhooks get", WebhooksGet},
      {"webhooks delete", WebhooksDelete},
      {"webhooks deliveries", WebhooksDeliveries},
      {"webhooks update", WebhooksUpdate},
      {"webhooks redeliver", WebhooksRedeliver},
      {"webhooks rotate-secret", WebhooksRotateSecret},
  };
  return *handlers;
}

}  // namespace

int UsageFailure(const CommandContext& c, absl::string_view message) {
  c.output.err() << "ftunectl: " << message << " (see 'ftunectl "
                 << c.inv.command->FullName() << " --help')\n";
  return kExitUsage;
}

int RunFtunectl(const std::vector<std::string>& args, const Environment& env,
                std::ostream& out, std::ostream& err,
                const TerminalInfo& terminal) {
  absl::StatusOr<Invocation> inv = ParseCommandLine(args, env);
  if (!inv.ok()) {
    err << "ftunectl: " << inv.status().message() << "\n";
    return kExitUsage;
  }
  if (inv->help) {
    out << Usage(inv->help_topic);
    return kExitOk;
  }
  auto handler = Handlers().find(inv->command->FullName());
  if (handler == Handlers().end()) {
    // A command in the grammar without a handler is a bug here, not the
    // user's; say so plainly.
    err << "ftunectl: \"" << inv->command->FullName()
        << "\" is not implemented\n";
    return kExitError;
  }
  absl::StatusOr<Connection> conn = Connection::Open(inv->global);
  if (!conn.ok()) {
    err << "ftunectl: " << conn.status().message() << "\n";
    return kExitUsage;
  }
  Output output(inv->global.output, out, err, terminal);
  CommandContext context{*inv, *conn, output};
  int rc = handler->second(context);
  out.flush();
  err.flush();
  return rc;
}

}  // namespace ftune::client
