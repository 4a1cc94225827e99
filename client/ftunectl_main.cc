// ftunectl: the command-line client of the ftune scheduler.
//
//   ftunectl [--endpoint HOST:PORT] status
//
// The endpoint comes from --endpoint, else $FTUNE_ENDPOINT, else
// 127.0.0.1:50051. Exit codes: 0 ok, 2 usage error, 3 server unreachable,
// 1 any other error.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "client/server_info.h"

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;

void PrintUsage(std::ostream& out) {
  out << "usage: ftunectl [--endpoint HOST:PORT] [--timeout SECONDS] COMMAND\n"
         "commands:\n"
         "  status   the server's health and the services it exposes\n";
}

int Status(const std::string& endpoint, absl::Duration timeout) {
  auto channel =
      grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  auto info = ftune::client::GetServerInfo(channel, timeout);
  if (!info.ok()) {
    std::cerr << "ftunectl: " << endpoint << ": " << info.status().message()
              << "\n";
    return info.status().code() == absl::StatusCode::kUnavailable ||
                   info.status().code() == absl::StatusCode::kDeadlineExceeded
               ? kExitUnavailable
               : kExitError;
  }
  std::cout << "endpoint: " << endpoint << "\n"
            << "health:   " << info->health << "\n"
            << "services: " << absl::StrJoin(info->services, ", ") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env_endpoint = std::getenv("FTUNE_ENDPOINT");
  std::string endpoint = env_endpoint ? env_endpoint : "127.0.0.1:50051";
  double timeout_s = 10;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& name) -> std::string {
      if (absl::StartsWith(arg, name + "=")) return arg.substr(name.size() + 1);
      if (i + 1 >= argc) {
        std::cerr << "ftunectl: " << name << " needs a value\n";
        std::exit(kExitUsage);
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      PrintUsage(std::cout);
      return 0;
    } else if (absl::StartsWith(arg, "--endpoint")) {
      endpoint = value("--endpoint");
    } else if (absl::StartsWith(arg, "--timeout")) {
      std::string v = value("--timeout");
      char* end = nullptr;
      timeout_s = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || timeout_s <= 0) {
        std::cerr << "ftunectl: --timeout: \"" << v
                  << "\" is not a positive number of seconds\n";
        return kExitUsage;
      }
    } else if (absl::StartsWith(arg, "-")) {
      std::cerr << "ftunectl: unknown flag " << arg << "\n";
      PrintUsage(std::cerr);
      return kExitUsage;
    } else {
      args.push_back(arg);
    }
  }
  if (args.size() == 1 && args[0] == "status") {
    return Status(endpoint, absl::Seconds(timeout_s));
  }
  std::cerr << "ftunectl: "
            << (args.empty() ? "no command given"
                             : "unknown command \"" + args[0] + "\"")
            << "\n";
  PrintUsage(std::cerr);
  return kExitUsage;
}
