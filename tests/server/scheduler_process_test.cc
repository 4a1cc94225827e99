// Starts the real ftune-scheduler binary on port 0 and talks to it over gRPC
// as any client would: health, reflection, graceful shutdown, bad flags.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "client/server_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

const std::string kScheduler = std::string(FTUNE_BIN_DIR) + "/ftune-scheduler";
const std::string kCtl = std::string(FTUNE_BIN_DIR) + "/ftunectl";
const std::string kWorker = std::string(FTUNE_BIN_DIR) + "/ftune-worker";

// A scheduler command line on port 0 over a database in `dir`.
std::vector<std::string> SchedulerArgs(
    const ftune::testing::TempDir& dir,
    const std::string& address = "127.0.0.1:0") {
  return {kScheduler,
          "--grpc_address=" + address,
          "--metrics_address=127.0.0.1:0",
          "--db=" + dir.Sub("sched.db"),
          "--storage_root=" + dir.Sub("storage"),
          "--allow_no_admin"};
}

TEST(SchedulerProcessTest, ServesHealthAndReflectionThenStopsOnSigterm) {
  testing::TempDir dir;
  testing::Subprocess proc;
  ASSERT_OK(proc.Start(SchedulerArgs(dir)));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      proc.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  EXPECT_THAT(address, HasSubstr("127.0.0.1:"));
  EXPECT_NE(address, "127.0.0.1:0");

  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ASSERT_OK_AND_ASSIGN(client::ServerInfo info,
                       client::GetServerInfo(channel, absl::Seconds(10)));
  EXPECT_EQ(info.health, "SERVING");
  EXPECT_THAT(info.services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(info.services,
              Contains("grpc.reflection.v1alpha.ServerReflection"));

  ASSERT_OK(proc.Signal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(int status, proc.Wait(absl::Seconds(30)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SchedulerProcessTest, FtunectlStatusReportsServing) {
  testing::TempDir dir;
  testing::Subprocess server;
  ASSERT_OK(server.Start(SchedulerArgs(dir)));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      server.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  testing::Subprocess ctl;
  ASSERT_OK(ctl.Start({kCtl, "--endpoint", address, "status"}));
  ASSERT_OK(ctl.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, ctl.Wait(absl::Seconds(10)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_THAT(ctl.lines(), Contains("health:   SERVING"));
}

TEST(SchedulerProcessTest, FtunectlUnreachableServerExitsWithCode3) {
  testing::Subprocess ctl;
  // Port 1 on loopback: nothing listens there.
  ASSERT_OK(
      ctl.Start({kCtl, "--endpoint", "127.0.0.1:1", "--timeout", "1", "status"},
                {}, "/dev/null"));
  ASSERT_OK(ctl.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, ctl.Wait(absl::Seconds(10)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
}

TEST(SchedulerProcessTest, BadAddressFailsAtStartWithMessage) {
  testing::TempDir dir;
  testing::Subprocess proc;
  ASSERT_OK(proc.Start(SchedulerArgs(dir, "no-port-here"), {}, "/dev/null"));
  ASSERT_OK(proc.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, proc.Wait(absl::Seconds(30)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(SchedulerProcessTest, PortInUseFailsAtStart) {
  testing::TempDir dir;
  testing::TempDir dir2;
  testing::Subprocess first;
  ASSERT_OK(first.Start(SchedulerArgs(dir)));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      first.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  testing::Subprocess second;
  ASSERT_OK(second.Start(SchedulerArgs(dir2, address), {}, "/dev/null"));
  ASSERT_OK(second.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, second.Wait(absl::Seconds(30)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

void WriteConfig(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(SchedulerProcessTest, ConfigFileSetsFlagsAndTheCommandLineWins) {
  testing::TempDir dir;
  // Everything from the file, except the address, which the file gets
  // wrong and the command line overrides.
  WriteConfig(dir.Sub("sched.json"),
              R"({"server": {"grpc_address": "no-port-here", "db": ")" +
                  dir.Sub("sched.db") + R"(", "storage_root": ")" +
                  dir.Sub("storage") +
                  R"(", "allow_no_admin": true, "lease_duration": "45s",
                  "rpc_threads": 4}, "models": []})");
  testing::Subprocess proc;
  ASSERT_OK(proc.Start({kScheduler, "--config=" + dir.Sub("sched.json"),
                        "--grpc_address=127.0.0.1:0",
                        "--metrics_address=127.0.0.1:0"}));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      proc.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  EXPECT_THAT(address, HasSubstr("127.0.0.1:"));
  EXPECT_TRUE(std::filesystem::exists(dir.Sub("sched.db")));
  ASSERT_OK(proc.Signal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(int status, proc.Wait(absl::Seconds(30)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(SchedulerProcessTest, ConfigFileWithAnUnknownSettingIsRefused) {
  testing::TempDir dir;
  WriteConfig(dir.Sub("sched.json"), R"({"server": {"lease_duraton": "12s"}})");
  testing::Subprocess proc;
  ASSERT_OK(proc.Start(
      {kScheduler, "--config=" + dir.Sub("sched.json"),
       "--db=" + dir.Sub("sched.db"), "--storage_root=" + dir.Sub("storage"),
       "--allow_no_admin", "--metrics_address=127.0.0.1:0"},
      {}, dir.Sub("stderr")));
  ASSERT_OK(proc.ReadAll(absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(int status, proc.Wait(absl::Seconds(30)));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream err(dir.Sub("stderr"));
  std::stringstream text;
  text << err.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("server.lease_duraton"));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("sched.db")));
}

// Exit status of `argv` (stdout/stderr to `log`).
int RunToEnd(const std::vector<std::string>& argv, const std::string& log) {
  testing::Subprocess proc;
  if (!proc.Start(argv, {}, log).ok()) return -1;
  (void)proc.ReadAll(absl::Seconds(60));
  absl::StatusOr<int> status = proc.Wait(absl::Seconds(60));
  if (!status.ok() || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

// A CA, a server certificate for localhost/127.0.0.1 and a client
// certificate, made with openssl.
void MakeCertificates(const testing::TempDir& dir) {
  const std::string d = dir.path();
  WriteConfig(d + "/ext.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  const std::vector<std::vector<std::string>> steps = {
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj",
       "/CN=ftune-test-ca"},
      {"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
       d + "/server.key", "-out", d + "/server.csr", "-subj", "/CN=localhost"},
      {"/usr/bin/openssl", "x509", "-req", "-in", d + "/server.csr", "-CA",
       d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-out",
       d + "/server.pem", "-days", "2", "-extfile", d + "/ext.cnf"},
      {"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
       d + "/client.key", "-out", d + "/client.csr", "-subj", "/CN=client"},
      {"/usr/bin/openssl", "x509", "-req", "-in", d + "/client.csr", "-CA",
       d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-out",
       d + "/client.pem", "-days", "2"},
  };
  for (const auto& argv : steps) {
    ASSERT_EQ(RunToEnd(argv, d + "/openssl.log"), 0) << argv[1] << " failed";
  }
}

TEST(SchedulerProcessTest, MutualTlsForClientsAndWorkers) {
  testing::TempDir dir;
  MakeCertificates(dir);
  WriteConfig(dir.Sub("worker.key"), "worker-credential-0123456789\n");
  std::vector<std::string> args = SchedulerArgs(dir);
  args.push_back("--tls_cert_file=" + dir.Sub("server.pem"));
  args.push_back("--tls_key_file=" + dir.Sub("server.key"));
  args.push_back("--tls_client_ca_file=" + dir.Sub("ca.pem"));
  args.push_back("--worker_key_file=" + dir.Sub("worker.key"));
  args.push_back("--http_address=127.0.0.1:0");
  testing::Subprocess sched;
  ASSERT_OK(sched.Start(args, {}, dir.Sub("scheduler.log")));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      sched.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  ASSERT_OK_AND_ASSIGN(
      std::string http,
      sched.ReadLineWithPrefix("http_address=", absl::Seconds(30)));

  // The HTTP API serves HTTPS with the same certificate and client CA: a
  // request with the CA and a client certificate reaches the API (an
  // unknown key gets its OpenAI-shaped 401 back through the TLS relay);
  // without a client certificate, or in plaintext, nothing is served.
  auto curl = [&](const std::string& name, std::vector<std::string> extra,
                  const std::string& scheme) {
    std::vector<std::string> argv = {"/usr/bin/curl",
                                     "-sS",
                                     "--max-time",
                                     "10",
                                     "-H",
                                     "Authorization: Bearer ftk_unknown",
                                     "-D",
                                     dir.Sub(name + ".headers"),
                                     "-o",
                                     dir.Sub(name + ".body")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(scheme + "://" + http + "/v1/fine_tuning/jobs");
    return RunToEnd(argv, dir.Sub(name + ".log"));
  };
  const auto read = [](const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  ASSERT_EQ(curl("https-mtls",
                 {"--cacert", dir.Sub("ca.pem"), "--cert",
                  dir.Sub("client.pem"), "--key", dir.Sub("client.key")},
                 "https"),
            0)
      << read(dir.Sub("https-mtls.log"));
  EXPECT_THAT(read(dir.Sub("https-mtls.headers")), HasSubstr(" 401"));
  EXPECT_THAT(read(dir.Sub("https-mtls.body")), HasSubstr("\"error\""));
  EXPECT_NE(curl("https-nocert", {"--cacert", dir.Sub("ca.pem")}, "https"), 0);
  EXPECT_NE(curl("plain", {}, "http"), 0);

  // With the CA and a client certificate: served.
  EXPECT_EQ(RunToEnd({kCtl, "--address", address, "--timeout", "10", "--tls-ca",
                      dir.Sub("ca.pem"), "--tls-cert", dir.Sub("client.pem"),
                      "--tls-key", dir.Sub("client.key"), "status"},
                     dir.Sub("ctl-ok.log")),
            0);
  // Without a client certificate, or in plaintext: refused.
  EXPECT_NE(RunToEnd({kCtl, "--address", address, "--timeout", "2", "--tls-ca",
                      dir.Sub("ca.pem"), "status"},
                     dir.Sub("ctl-nocert.log")),
            0);
  EXPECT_NE(RunToEnd({kCtl, "--address", address, "--timeout", "2", "status"},
                     dir.Sub("ctl-plain.log")),
            0);

  // A worker registers over mTLS.
  std::filesystem::create_directories(dir.Sub("storage"));
  testing::Subprocess worker;
  ASSERT_OK(worker.Start(
      {kWorker, "--scheduler=" + address,
       "--storage_root=" + dir.Sub("storage"),
       "--worker_key_file=" + dir.Sub("worker.key"),
       "--trainer=" + std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer",
       "--work_dir=" + dir.Sub("work"), "--cpu_slots=1", "--gpus=none",
       "--metrics_address=127.0.0.1:0", "--tls_ca_file=" + dir.Sub("ca.pem"),
       "--tls_cert_file=" + dir.Sub("client.pem"),
       "--tls_key_file=" + dir.Sub("client.key")},
      {}, dir.Sub("worker.log")));
  ASSERT_OK_AND_ASSIGN(
      std::string worker_id,
      worker.ReadLineWithPrefix("worker_id=", absl::Seconds(30)));
  EXPECT_THAT(worker_id, HasSubstr("worker-"));
  ASSERT_OK(worker.Signal(SIGTERM));
  (void)worker.Wait(absl::Seconds(30));
  ASSERT_OK(sched.Signal(SIGTERM));
  ASSERT_OK_AND_ASSIGN(int status, sched.Wait(absl::Seconds(30)));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace ftune

namespace ftune {
namespace {

// Runs `ftunectl --endpoint ADDRESS --api-key-file KEY tenants list`; its
// exit code.
int TenantsList(const std::string& address, const std::string& key_file) {
  testing::Subprocess ctl;
  if (!ctl.Start({kCtl, "--endpoint", address, "--api-key-file", key_file,
                  "tenants", "list"},
                 {}, "/dev/null")
           .ok()) {
    return -1;
  }
  (void)ctl.ReadAll(absl::Seconds(30));
  absl::StatusOr<int> status = ctl.Wait(absl::Seconds(10));
  return status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

// Every line of a credential file is accepted (comments aside), so a
// rotation can keep the old and the new secret for a while.
TEST(SchedulerProcessTest, CredentialFileAcceptsEveryLine) {
  testing::TempDir dir;
  const std::string old_key = "old-admin-secret-0123456789abcdef";
  const std::string new_key = "new-admin-secret-0123456789abcdef";
  std::ofstream(dir.Sub("admin.keys"))
      << "# rotation under way\n"
      << old_key << "\n\n  " << new_key << "  \n";
  for (const auto& [name, key] :
       {std::pair<std::string, std::string>{"old.key", old_key},
        {"new.key", new_key},
        {"other.key", "other-secret-0123456789abcdef"},
        {"comment.key", "# rotation under way"}}) {
    std::ofstream(dir.Sub(name)) << key << "\n";
  }
  std::vector<std::string> args = SchedulerArgs(dir);
  args.pop_back();  // --allow_no_admin
  args.push_back("--admin_key_file=" + dir.Sub("admin.keys"));
  testing::Subprocess server;
  ASSERT_OK(server.Start(args));
  ASSERT_OK_AND_ASSIGN(
      std::string address,
      server.ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  EXPECT_EQ(TenantsList(address, dir.Sub("old.key")), 0);
  EXPECT_EQ(TenantsList(address, dir.Sub("new.key")), 0);
  EXPECT_EQ(TenantsList(address, dir.Sub("other.key")), 1);
  EXPECT_EQ(TenantsList(address, dir.Sub("comment.key")), 1);
}

}  // namespace
}  // namespace ftune
