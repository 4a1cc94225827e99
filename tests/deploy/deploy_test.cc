// The monitoring files under deploy/ checked against the real thing
// (docs/monitoring.md):
//
// - the Grafana dashboard and the alert rules refer only to metrics that
//   ftune-scheduler and ftune-worker really export (a scrape of a real
//   cluster running a job), with labels they carry, and to the provisioned
//   datasource and the dashboard's own variables;
// - the exposition of both binaries passes `promtool check metrics`;
// - a real Prometheus, run with deploy/prometheus/prometheus.yml (targets
//   and intervals replaced) and alerts.yml, scrapes a cluster while a job
//   runs: the values come back through its HTTP API, every rule loads, and
//   every dashboard and alert expression is accepted by its query engine.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/deploy/promql_refs.h"
#include "tests/integration/cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune::testing {
namespace {

using ::nlohmann::json;
using ::testing::IsEmpty;

const std::string kSourceDir = FTUNE_SOURCE_DIR;
const std::string kPrometheusDir = kSourceDir + "/deploy/prometheus";
const std::string kGrafanaDir = kSourceDir + "/deploy/grafana";
const std::string kDashboard = kGrafanaDir + "/dashboards/ftune.json";
const std::string kDatasource =
    kGrafanaDir + "/provisioning/datasources/datasource.yml";
const std::string kStandIn =
    std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";

// The worker exports these only on a host where nvidia-smi reports GPUs, so
// a scrape on a CPU-only test machine lacks them. They are documented in
// docs/metrics.md (checked below); keep this list to exactly such metrics.
const std::set<std::string> kGpuOnlyWorkerMetrics = {
    "ftune_worker_gpu_memory_used_bytes",
    "ftune_worker_gpu_utilization_ratio",
};

// Series Prometheus writes itself for every target, with its labels.
const std::map<std::string, std::set<std::string>> kPrometheusSeries = {
    {"up", {"job", "instance"}},
};

// Grafana's built-in variables: durations a query may use in a range.
const std::map<std::string, std::string> kGrafanaDurations = {
    {"__rate_interval", "1m"},
    {"__interval", "15s"},
    {"__range", "1h"},
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string TrainingJsonl() {
  std::string out;
  for (int i = 0; i < 8; ++i) {
    absl::StrAppend(&out, R"({"prompt": "count to )", i,
                    R"(", "completion": " done"})", "\n");
  }
  return out;
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: ", address));
  }
  return std::make_pair(address.substr(0, colon), port);
}

absl::StatusOr<std::string> Get(const std::string& address,
                                const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(auto host_port, SplitHostPort(address));
  FTUNE_ASSIGN_OR_RETURN(HttpResponse response,
                         HttpGet(host_port.first, host_port.second, path));
  if (response.status != 200) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GET ", address, path, ": ", response.status, " ", response.body));
  }
  return response.body;
}

// A metric family of an exposition: its type (from `# TYPE`) and the label
// names seen on its samples (empty when it had none).
struct Family {
  std::string type;
  std::set<std::string> labels;
  bool has_samples = false;
};
using Families = std::map<std::string, Family>;

// Label names of a sample line's `{...}`, values skipped (with escapes).
std::set<std::string> SampleLabelNames(absl::string_view labels) {
  std::set<std::string> out;
  size_t i = 0;
  while (i < labels.size()) {
    const size_t eq = labels.find('=', i);
    if (eq == absl::string_view::npos) break;
    out.insert(
        std::string(absl::StripAsciiWhitespace(labels.substr(i, eq - i))));
    i = eq + 2;  // past `="`
    while (i < labels.size() && labels[i] != '"') {
      i += labels[i] == '\\' ? 2 : 1;
    }
    i += 2;  // past `",`
  }
  return out;
}

// Adds the families of `text` (Prometheus text format 0.0.4) to `families`.
void AddFamilies(const std::string& text, Families* families) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      if (words.size() == 2) (*families)[words[0]].type = words[1];
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    const std::string name(line.substr(0, name_end));
    std::string family = name;
    if (!families->count(family)) family = HistogramFamilyOf(name);
    auto it = families->find(family);
    if (it == families->end()) continue;
    it->second.has_samples = true;
    if (name_end != absl::string_view::npos && line[name_end] == '{') {
      const size_t close = line.rfind('}');
      for (std::string label :
           SampleLabelNames(line.substr(name_end + 1, close - name_end - 1))) {
        if (label != "le") it->second.labels.insert(label);
      }
    }
  }
}

std::set<std::string> Names(const Families& families) {
  std::set<std::string> out;
  for (const auto& [name, family] : families) out.insert(name);
  return out;
}

// Where an expression comes from, for messages.
struct Expression {
  std::string where;
  std::string expr;
};

YAML::Node LoadYaml(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    ADD_FAILURE() << path << ": " << e.what();
    return YAML::Node();
  }
}

// Every `expr` of the alert rules.
std::vector<Expression> AlertExpressions() {
  std::vector<Expression> out;
  for (const YAML::Node& group :
       LoadYaml(kPrometheusDir + "/alerts.yml")["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      out.push_back({"alert " + rule["alert"].as<std::string>("?"),
                     rule["expr"].as<std::string>("")});
    }
  }
  return out;
}

json LoadDashboard() {
  try {
    return json::parse(ReadFile(kDashboard));
  } catch (const json::exception& e) {
    ADD_FAILURE() << kDashboard << ": " << e.what();
    return json::object();
  }
}

// The template variables.
json Variables(const json& dashboard) {
  return dashboard.value("templating", json::object())
      .value("list", json::array());
}

// Panels, those nested in collapsed rows included.
std::vector<json> AllPanels(const json& dashboard) {
  std::vector<json> out;
  for (const json& panel : dashboard.value("panels", json::array())) {
    out.push_back(panel);
    for (const json& inner : panel.value("panels", json::array())) {
      out.push_back(inner);
    }
  }
  return out;
}

// Every query of the dashboard's panels, and the selectors of its
// `label_values()` variables.
std::vector<Expression> DashboardExpressions(const json& dashboard) {
  std::vector<Expression> out;
  for (const json& panel : AllPanels(dashboard)) {
    for (const json& target : panel.value("targets", json::array())) {
      out.push_back({absl::StrCat("panel \"", panel.value("title", ""), "\" ",
                                  target.value("refId", "")),
                     target.value("expr", "")});
    }
  }
  for (const json& variable : Variables(dashboard)) {
    if (variable.value("type", "") != "query") continue;
    absl::StatusOr<LabelValuesQuery> q =
        ParseLabelValuesQuery(variable.value("query", ""));
    if (q.ok()) {
      out.push_back({"variable " + variable.value("name", "") + " selector",
                     q->selector});
    }
  }
  return out;
}

std::string ProvisionedDatasourceUid() {
  const YAML::Node datasources = LoadYaml(kDatasource)["datasources"];
  if (!datasources || datasources.size() != 1) {
    ADD_FAILURE() << kDatasource << ": expected exactly one datasource";
    return "";
  }
  return datasources[0]["uid"].as<std::string>("");
}

// An expression with Grafana's variables replaced, for Prometheus: ranges
// get a duration, variables (all used in regex matchers) match anything.
std::string ForPrometheus(std::string expr) {
  for (const auto& [name, duration] : kGrafanaDurations) {
    absl::StrReplaceAll({{"${" + name + "}", duration}, {"$" + name, duration}},
                        &expr);
  }
  std::string out;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] != '$') {
      out += expr[i];
      continue;
    }
    size_t end = i + 1;
    if (end < expr.size() && expr[end] == '{') {
      end = expr.find('}', end) + 1;
    } else {
      while (end < expr.size() &&
             (absl::ascii_isalnum(expr[end]) || expr[end] == '_')) {
        ++end;
      }
    }
    out += ".*";
    i = end - 1;
  }
  return out;
}

std::string UrlEncode(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out += c;
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  return out;
}

// A real Prometheus server on loopback, stopped (SIGTERM) when destroyed.
class PrometheusProcess {
 public:
  ~PrometheusProcess() {
    if (process_ != nullptr && process_->running()) {
      (void)process_->Signal(SIGTERM);
      if (!process_->Wait(absl::Seconds(10)).ok()) {
        (void)process_->Signal(SIGKILL);
        (void)process_->Wait(absl::Seconds(5));
      }
    }
    if (::testing::Test::HasFailure() && !log_.empty()) {
      std::cerr << "---- prometheus.log\n" << ReadFile(log_) << "\n";
    }
  }

  // Starts it on a free port with `config` and data under `dir`; returns
  // when it answers /-/ready.
  absl::Status Start(const std::string& config, const std::string& dir) {
    log_ = dir + "/prometheus.log";
    for (int attempt = 0; attempt < 3; ++attempt) {
      FTUNE_ASSIGN_OR_RETURN(const int port, FreePort());
      address_ = absl::StrCat("127.0.0.1:", port);
      process_ = std::make_unique<Subprocess>();
      FTUNE_RETURN_IF_ERROR(process_->Start(
          {FTUNE_PROMETHEUS, "--config.file=" + config,
           "--storage.tsdb.path=" + dir + "/tsdb",
           "--web.listen-address=" + address_, "--log.level=warn"},
          {}, log_));
      const absl::Time deadline = absl::Now() + absl::Seconds(20);
      while (absl::Now() < deadline) {
        if (Get(address_, "/-/ready").ok()) return absl::OkStatus();
        // Exited: the port was taken after all (or a bad config). Again.
        if (process_->Wait(absl::Milliseconds(100)).ok()) break;
      }
      if (process_->running()) {
        return absl::DeadlineExceededError("prometheus did not become ready");
      }
    }
    return absl::UnavailableError(
        absl::StrCat("prometheus did not start; its log:\n", ReadFile(log_)));
  }

  // The `data` of a successful API answer for `path`.
  absl::StatusOr<json> Api(const std::string& path) {
    FTUNE_ASSIGN_OR_RETURN(std::string body, Get(address_, path));
    json answer = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (answer.is_discarded() || answer.value("status", "") != "success") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", body));
    }
    return answer["data"];
  }

  // An instant query's result vector; errors when Prometheus refuses it.
  absl::StatusOr<json> Query(const std::string& expr) {
    FTUNE_ASSIGN_OR_RETURN(json data,
                           Api("/api/v1/query?query=" + UrlEncode(expr)));
    return data["result"];
  }

  // Polls `expr` until it returns a sample for which `pred` holds.
  absl::StatusOr<json> WaitFor(const std::string& expr,
                               const std::function<bool(const json&)>& pred,
                               absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::StatusOr<json> last = absl::DeadlineExceededError("no answer");
    while (absl::Now() < deadline) {
      last = Query(expr);
      if (last.ok()) {
        for (const json& sample : *last) {
          if (pred(sample)) return sample;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return absl::DeadlineExceededError(
        absl::StrCat(expr, " did not come true; last: ",
                     last.ok() ? last->dump() : last.status().ToString()));
  }

 private:
  static absl::StatusOr<int> FreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    const bool ok =
        fd >= 0 &&
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) return absl::UnavailableError("no free port");
    return ntohs(addr.sin_port);
  }

  std::unique_ptr<Subprocess> process_;
  std::string address_;
  std::string log_;
};

double SampleValue(const json& sample) {
  double v = 0;
  const json value = sample.value("value", json::array());
  if (value.size() != 2 || !value[1].is_string() ||
      !absl::SimpleAtod(value[1].get<std::string>(), &v)) {
    return -1;
  }
  return v;
}

// deploy/prometheus/prometheus.yml for a test: the same scrape jobs, with the
// cluster's addresses as targets, 1 s intervals and alerts.yml by absolute
// path.
absl::StatusOr<std::string> TestPrometheusConfig(
    const std::map<std::string, std::string>& target_by_job) {
  try {
    YAML::Node config = YAML::LoadFile(kPrometheusDir + "/prometheus.yml");
    config["global"]["scrape_interval"] = "1s";
    config["global"]["scrape_timeout"] = "1s";
    config["global"]["evaluation_interval"] = "1s";
    std::vector<std::string> rules;
    for (const YAML::Node& file : config["rule_files"]) {
      rules.push_back(kPrometheusDir + "/" + file.as<std::string>());
    }
    config["rule_files"] = rules;
    std::set<std::string> jobs;
    for (YAML::Node job : config["scrape_configs"]) {
      const std::string name = job["job_name"].as<std::string>();
      auto it = target_by_job.find(name);
      if (it == target_by_job.end()) {
        return absl::NotFoundError("no test target for scrape job " + name);
      }
      YAML::Node targets;
      targets["targets"].push_back(it->second);
      YAML::Node static_configs;
      static_configs.push_back(targets);
      job["static_configs"] = static_configs;
      jobs.insert(name);
    }
    if (jobs.size() != target_by_job.size()) {
      return absl::NotFoundError(
          absl::StrCat("prometheus.yml scrapes ", absl::StrJoin(jobs, ", "),
                       "; the test expected ", target_by_job.size(), " jobs"));
    }
    YAML::Emitter out;
    out << config;
    return std::string(out.c_str()) + "\n";
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

// ---- The files alone ------------------------------------------------------

TEST(DeployFilesTest, DashboardUsesTheProvisionedDatasourceAndItsVariables) {
  const json dashboard = LoadDashboard();
  const std::string uid = ProvisionedDatasourceUid();
  ASSERT_FALSE(uid.empty());
  EXPECT_FALSE(dashboard.value("uid", "").empty());
  EXPECT_FALSE(dashboard.value("title", "").empty());

  std::set<std::string> defined;
  for (const auto& [name, duration] : kGrafanaDurations) defined.insert(name);
  for (const json& variable : Variables(dashboard)) {
    const std::string name = variable.value("name", "");
    EXPECT_TRUE(defined.insert(name).second) << "variable " << name << " twice";
    EXPECT_EQ(variable.value("type", ""), "query") << name;
    EXPECT_EQ(variable.value("datasource", json::object()).value("uid", ""),
              uid)
        << name;
    ASSERT_OK(ParseLabelValuesQuery(variable.value("query", "")));
    EXPECT_EQ(variable.value("query", ""), variable.value("definition", ""))
        << name;
  }
  EXPECT_TRUE(defined.count("job")) << "the per-job panels need $job";
  EXPECT_TRUE(defined.count("tenant"));

  std::set<int> ids;
  int queries = 0;
  for (const json& panel : AllPanels(dashboard)) {
    const std::string title = panel.value("title", "");
    EXPECT_TRUE(ids.insert(panel.value("id", -1)).second)
        << "panel id " << panel.value("id", -1) << " twice (" << title << ")";
    const json pos = panel.value("gridPos", json::object());
    EXPECT_GT(pos.value("w", 0), 0) << title;
    EXPECT_GT(pos.value("h", 0), 0) << title;
    EXPECT_LE(pos.value("x", 0) + pos.value("w", 0), 24) << title;
    if (panel.value("type", "") == "row") continue;
    EXPECT_FALSE(title.empty());
    EXPECT_EQ(panel.value("datasource", json::object()).value("uid", ""), uid)
        << title;
    const json targets = panel.value("targets", json::array());
    EXPECT_FALSE(targets.empty()) << title;
    std::set<std::string> ref_ids;
    for (const json& target : targets) {
      ++queries;
      EXPECT_EQ(target.value("datasource", json::object()).value("uid", ""),
                uid)
          << title;
      EXPECT_TRUE(ref_ids.insert(target.value("refId", "")).second) << title;
      absl::StatusOr<PromQLRefs> refs =
          ParsePromQLRefs(target.value("expr", ""));
      ASSERT_OK(refs) << title;
      EXPECT_FALSE(refs->selectors.empty()) << title;
      for (const std::string& v : refs->variables) {
        EXPECT_TRUE(defined.count(v))
            << title << " uses $" << v << ", which is not defined";
      }
    }
  }
  EXPECT_GE(queries, 20);
}

TEST(DeployFilesTest, EveryAlertHasSeverityTextAndDocumentation) {
  const std::string docs = ReadFile(kSourceDir + "/docs/monitoring.md");
  int alerts = 0;
  for (const YAML::Node& group :
       LoadYaml(kPrometheusDir + "/alerts.yml")["groups"]) {
    for (const YAML::Node& rule : group["rules"]) {
      const std::string name = rule["alert"].as<std::string>("");
      ASSERT_FALSE(name.empty()) << "only alerting rules are expected";
      ++alerts;
      const std::string severity =
          rule["labels"]["severity"].as<std::string>("");
      EXPECT_TRUE(severity == "critical" || severity == "warning")
          << name << ": severity \"" << severity << "\"";
      EXPECT_FALSE(rule["annotations"]["summary"].as<std::string>("").empty())
          << name;
      EXPECT_FALSE(
          rule["annotations"]["description"].as<std::string>("").empty())
          << name;
      EXPECT_TRUE(absl::StrContains(docs, "### " + name))
          << name << " has no section in docs/monitoring.md";
    }
  }
  EXPECT_GE(alerts, 4);
}

// ---- Against a real cluster -----------------------------------------------

// What the binaries export, scraped while a job runs and after it ended.
struct Scrapes {
  std::vector<std::pair<std::string, std::string>> bodies;  // (what, text)
  Families scheduler;
  Families worker;
};

class DeployClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(cluster_.StartScheduler());
    ASSERT_OK_AND_ASSIGN(tenant_, cluster_.CreateTenant("acme"));
    ASSERT_OK_AND_ASSIGN(
        file_, cluster_.UploadFile(tenant_, "train.jsonl", TrainingJsonl()));
    WorkerOptions w;
    w.trainer = kStandIn;
    w.env = {{"FTUNE_STAND_IN_STEP_MS", "200"}};
    ASSERT_OK_AND_ASSIGN(const int index, cluster_.StartWorker(w));
    worker_metrics_ = cluster_.worker_metrics_address(index);
    ASSERT_FALSE(worker_metrics_.empty());
  }

  // Creates a job of `steps` steps (200 ms each) that evaluates every 2.
  absl::StatusOr<v1::Job> CreateJob(int steps) {
    v1::JobSpec spec = StepsSpec("tiny", file_, steps, 0, 0);
    spec.set_validation_split(0.25);
    spec.mutable_hyperparameters()->set_eval_every_steps(2);
    return cluster_.CreateJob(tenant_, spec);
  }

  absl::StatusOr<v1::Job> WaitForStep(const v1::Job& job, int step) {
    return cluster_.WaitForJob(
        tenant_, job.id(),
        [step](const v1::Job& j) {
          return j.state() == v1::JOB_STATE_RUNNING &&
                 j.progress().step() >= step;
        },
        absl::Seconds(30));
  }

  absl::StatusOr<v1::Job> WaitForEnd(const v1::Job& job) {
    return cluster_.WaitForJob(
        tenant_, job.id(),
        [](const v1::Job& j) {
          return j.state() == v1::JOB_STATE_SUCCEEDED ||
                 j.state() == v1::JOB_STATE_FAILED ||
                 j.state() == v1::JOB_STATE_CANCELLED;
        },
        absl::Seconds(30));
  }

  // Scrapes both binaries while a job runs (per-job series) and after it
  // ended (finished counters, trainer exits).
  void ScrapeAroundAJob(Scrapes* out) {
    ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(10));
    ASSERT_OK(WaitForStep(job, 3).status());
    for (const char* when : {"running", "ended"}) {
      if (std::string(when) == "ended") {
        ASSERT_OK_AND_ASSIGN(v1::Job done, WaitForEnd(job));
        ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
      }
      ASSERT_OK_AND_ASSIGN(std::string s,
                           Get(cluster_.metrics_address(), "/metrics"));
      ASSERT_OK_AND_ASSIGN(std::string w, Get(worker_metrics_, "/metrics"));
      AddFamilies(s, &out->scheduler);
      AddFamilies(w, &out->worker);
      out->bodies.emplace_back(absl::StrCat("scheduler (job ", when, ")"), s);
      out->bodies.emplace_back(absl::StrCat("worker (job ", when, ")"), w);
    }
  }

  Cluster cluster_;
  TenantHandle tenant_;
  std::string file_;
  std::string worker_metrics_;
};

TEST_F(DeployClusterTest, ScrapesPassPromtoolCheckMetrics) {
  Scrapes scrapes;
  ASSERT_NO_FATAL_FAILURE(ScrapeAroundAJob(&scrapes));
  // The families the dashboard's per-job panels need were there.
  EXPECT_TRUE(scrapes.scheduler["ftune_job_train_loss"].has_samples);
  EXPECT_TRUE(scrapes.scheduler["ftune_job_eval_loss"].has_samples);
  for (const auto& [what, body] : scrapes.bodies) {
    const std::string path = cluster_.Path("scrape.txt");
    std::ofstream(path) << body;
    const std::string out = cluster_.Path("promtool.txt");
    const int rc =
        std::system((std::string(FTUNE_PROMTOOL) + " check metrics < " + path +
                     " > " + out + " 2>&1")
                        .c_str());
    EXPECT_EQ(rc, 0) << what << ": " << ReadFile(out);
    // It exits 0 on lint problems too; it must print none.
    EXPECT_THAT(ReadFile(out), IsEmpty()) << what;
  }
}

// The labels a series of `family` has in Prometheus: those of the
// exposition plus the target's labels. No exported family may use `job` or
// `instance` itself (Prometheus would rename it to exported_job).
std::set<std::string> PrometheusLabels(const Family& family) {
  std::set<std::string> out = {"job", "instance"};
  for (const std::string& label : family.labels) {
    EXPECT_NE(label, "job") << "a family uses the reserved label job";
    EXPECT_NE(label, "instance") << "a family uses the reserved label instance";
    out.insert(label);
  }
  if (family.type == "histogram") out.insert("le");
  return out;
}

TEST_F(DeployClusterTest, DashboardAndAlertsUseOnlyExportedMetrics) {
  Scrapes scrapes;
  ASSERT_NO_FATAL_FAILURE(ScrapeAroundAJob(&scrapes));
  ASSERT_TRUE(scrapes.scheduler.count("ftune_jobs"));
  ASSERT_TRUE(scrapes.worker.count("process_cpu_seconds_total"));

  // Each family, with what Prometheus would add; nullptr when only its name
  // is known (the GPU-only worker metrics).
  auto lookup = [&](const std::string& metric,
                    std::string* family_name) -> const Family* {
    for (const Families* families : {&scrapes.scheduler, &scrapes.worker}) {
      auto it = families->find(metric);
      if (it != families->end()) {
        *family_name = metric;
        return &it->second;
      }
      const std::string base = HistogramFamilyOf(metric);
      it = families->find(base);
      if (!base.empty() && it != families->end() &&
          (it->second.type == "histogram" || it->second.type == "summary")) {
        *family_name = base;
        return &it->second;
      }
    }
    *family_name = metric;
    return nullptr;
  };

  std::vector<Expression> expressions = AlertExpressions();
  const json dashboard = LoadDashboard();
  for (Expression& e : DashboardExpressions(dashboard)) {
    expressions.push_back(std::move(e));
  }
  ASSERT_GE(expressions.size(), 25u);
  std::set<std::string> used;
  for (const Expression& e : expressions) {
    SCOPED_TRACE(e.where + ": " + e.expr);
    ASSERT_OK_AND_ASSIGN(PromQLRefs refs, ParsePromQLRefs(e.expr));
    std::set<std::string> labels_in_scope = {"le"};
    bool scope_known = true;
    for (const PromQLSelector& s : refs.selectors) {
      std::string family_name;
      const Family* family = lookup(s.metric, &family_name);
      std::set<std::string> labels;
      if (family != nullptr) {
        labels = PrometheusLabels(*family);
      } else if (kPrometheusSeries.count(s.metric)) {
        labels = kPrometheusSeries.at(s.metric);
      } else if (kGpuOnlyWorkerMetrics.count(s.metric)) {
        labels = {"job", "instance", "gpu"};
      } else {
        ADD_FAILURE() << "metric " << s.metric
                      << " is exported by neither ftune-scheduler nor "
                         "ftune-worker";
        continue;
      }
      used.insert(family_name);
      labels_in_scope.insert(labels.begin(), labels.end());
      // Labels are known only from samples; a family without any in these
      // scrapes (e.g. requeues) is checked by name only.
      if (family != nullptr && !family->has_samples) {
        scope_known = false;
        continue;
      }
      for (const std::string& label : s.labels) {
        EXPECT_TRUE(labels.count(label))
            << s.metric << " has no label " << label << " (it has "
            << absl::StrJoin(labels, ", ") << ")";
      }
    }
    for (const std::string& label : refs.grouping_labels) {
      if (!scope_known) break;
      EXPECT_TRUE(labels_in_scope.count(label))
          << "grouping by " << label << ", which none of its metrics has";
    }
  }

  // The variables' label_values() name a label their metric has.
  for (const json& variable : Variables(dashboard)) {
    ASSERT_OK_AND_ASSIGN(LabelValuesQuery q,
                         ParseLabelValuesQuery(variable.value("query", "")));
    ASSERT_OK_AND_ASSIGN(PromQLRefs refs, ParsePromQLRefs(q.selector));
    ASSERT_EQ(refs.selectors.size(), 1u) << q.selector;
    std::string family_name;
    const Family* family = lookup(refs.selectors[0].metric, &family_name);
    ASSERT_NE(family, nullptr) << q.selector;
    ASSERT_TRUE(family->has_samples) << q.selector;
    EXPECT_TRUE(PrometheusLabels(*family).count(q.label))
        << "variable " << variable.value("name", "") << ": " << family_name
        << " has no label " << q.label;
  }

  // docs/metrics.md lists every ftune family the binaries export, and the
  // GPU-only ones.
  const std::string docs = ReadFile(kSourceDir + "/docs/metrics.md");
  std::set<std::string> exported = Names(scrapes.scheduler);
  for (const std::string& name : Names(scrapes.worker)) exported.insert(name);
  exported.insert(kGpuOnlyWorkerMetrics.begin(), kGpuOnlyWorkerMetrics.end());
  for (const std::string& name : exported) {
    if (!absl::StartsWith(name, "ftune_")) continue;
    EXPECT_TRUE(absl::StrContains(docs, "`" + name + "`"))
        << name << " is not documented in docs/metrics.md";
  }
  // And the dashboard shows most of what there is (a new family probably
  // deserves a panel).
  EXPECT_GE(used.size(), 25u) << absl::StrJoin(used, ", ");
}

TEST_F(DeployClusterTest, PrometheusScrapesTheClusterWhileAJobRuns) {
  ASSERT_OK_AND_ASSIGN(
      std::string config,
      TestPrometheusConfig({{"ftune-scheduler", cluster_.metrics_address()},
                            {"ftune-worker", worker_metrics_}}));
  const std::string config_path = cluster_.Path("prometheus.yml");
  std::ofstream(config_path) << config;
  std::filesystem::create_directories(cluster_.Path("prometheus"));
  PrometheusProcess prometheus;
  ASSERT_OK(prometheus.Start(config_path, cluster_.Path("prometheus")))
      << config;

  // 40 steps of 200 ms: several scrapes while the job runs.
  ASSERT_OK_AND_ASSIGN(v1::Job job, CreateJob(40));
  auto is_one = [](const json& s) { return SampleValue(s) == 1; };
  ASSERT_OK(
      prometheus
          .WaitFor(R"(up{job="ftune-scheduler"})", is_one, absl::Seconds(15))
          .status());
  ASSERT_OK(
      prometheus.WaitFor(R"(up{job="ftune-worker"})", is_one, absl::Seconds(15))
          .status());
  ASSERT_OK(
      prometheus
          .WaitFor("ftune_worker_running_attempts", is_one, absl::Seconds(15))
          .status());
  // The live loss of the job, under its id as `job_id` (prometheus.yml
  // moves the exported `job` label there) and the scrape job as `job`.
  ASSERT_OK_AND_ASSIGN(
      json loss,
      prometheus.WaitFor(
          absl::StrCat(R"(ftune_job_train_loss{job_id=")", job.id(), R"("})"),
          [](const json& s) { return SampleValue(s) > 0; }, absl::Seconds(20)));
  EXPECT_EQ(loss["metric"].value("tenant", ""), tenant_.id);
  EXPECT_EQ(loss["metric"].value("job", ""), "ftune-scheduler");
  EXPECT_FALSE(loss["metric"].contains("exported_job")) << loss.dump();
  ASSERT_OK(prometheus
                .WaitFor(
                    absl::StrCat(R"(ftune_job_progress_ratio{job_id=")",
                                 job.id(), R"("})"),
                    [](const json& s) { return SampleValue(s) > 0; },
                    absl::Seconds(10))
                .status());

  // Every rule of alerts.yml loaded and evaluates without error.
  int rules = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::vector<std::string> not_ok;
  do {
    ASSERT_OK_AND_ASSIGN(json data, prometheus.Api("/api/v1/rules"));
    rules = 0;
    not_ok.clear();
    for (const json& group : data["groups"]) {
      for (const json& rule : group.value("rules", json::array())) {
        ++rules;
        if (rule.value("health", "") != "ok") {
          not_ok.push_back(rule.dump());
        }
      }
    }
    if (not_ok.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  } while (absl::Now() < deadline);
  EXPECT_EQ(static_cast<size_t>(rules), AlertExpressions().size());
  EXPECT_THAT(not_ok, IsEmpty());
  // With the scheduler up and a worker active, none of them fires.
  ASSERT_OK_AND_ASSIGN(json alerts, prometheus.Api("/api/v1/alerts"));
  for (const json& alert : alerts["alerts"]) {
    EXPECT_NE(alert.value("state", ""), "firing") << alert.dump();
  }

  // Prometheus's engine accepts every expression of the dashboard and the
  // alerts (Grafana's variables filled in).
  for (const Expression& e : DashboardExpressions(LoadDashboard())) {
    EXPECT_OK(prometheus.Query(ForPrometheus(e.expr))) << "\n" << e.where;
  }
  for (const Expression& e : AlertExpressions()) {
    EXPECT_OK(prometheus.Query(e.expr)) << "\n" << e.where;
  }

  ASSERT_OK_AND_ASSIGN(v1::Job done, WaitForEnd(job));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK(prometheus
                .WaitFor(
                    absl::StrCat(R"(ftune_jobs_finished_total{tenant=")",
                                 tenant_.id, R"(", state="succeeded"})"),
                    [](const json& s) { return SampleValue(s) >= 1; },
                    absl::Seconds(10))
                .status());
  // The per-job series went away with the job.
  ASSERT_OK(prometheus
                .WaitFor(absl::StrCat(R"(absent(ftune_job_train_loss{job_id=")",
                                      job.id(), R"("}))"),
                         is_one, absl::Seconds(10))
                .status());
  ASSERT_OK(prometheus
                .WaitFor(
                    "sum(ftune_worker_trainers_started_total)",
                    [](const json& s) { return SampleValue(s) >= 1; },
                    absl::Seconds(10))
                .status());
}

}  // namespace
}  // namespace ftune::testing
