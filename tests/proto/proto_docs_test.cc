// Checks the ftune.v1 API contract itself:
// - every service, rpc, message, field, oneof, enum and enum value carries a
//   leading comment (read from the descriptor set the build generates with
//   --include_source_info, so adding an undocumented field fails this test);
// - naming conventions that keep generated code unambiguous (prefixed enum
//   values, *_UNSPECIFIED = 0, pagination fields, documented auth/errors);
// - the compiled-in C++ types are the ones the descriptor set describes and
//   behave as documented (round trip, oneofs, explicit presence);
// - docs/api.md is complete: its "Reference: every rpc" tables list every
//   rpc of every service with its request and response types and the first
//   sentence of its comment (and nothing that does not exist), its Services
//   table names every rpc, and every message and enum is named somewhere.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/model.grpc.pb.h"
#include "ftune/v1/webhook.grpc.pb.h"
#include "ftune/v1/worker.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

#if !defined(FTUNE_PROTO_DESCRIPTOR_SET) || \
    !defined(FTUNE_PROTO_SAMPLES_DIR) || !defined(FTUNE_SOURCE_DIR)
#error \
    "FTUNE_PROTO_DESCRIPTOR_SET, FTUNE_PROTO_SAMPLES_DIR and FTUNE_SOURCE_DIR must be defined"
#endif

namespace ftune::v1 {
namespace {

namespace pb = ::google::protobuf;

constexpr absl::string_view kPackage = "ftune.v1";

// --- Descriptor walking -----------------------------------------------

template <typename D>
std::string LeadingComment(const D* d) {
  pb::SourceLocation loc;
  if (!d->GetSourceLocation(&loc)) return "";
  return std::string(absl::StripAsciiWhitespace(loc.leading_comments));
}

// "JobState" -> "JOB_STATE", "LrScheduler" -> "LR_SCHEDULER".
std::string UpperSnake(absl::string_view camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    const char c = camel[i];
    if (i > 0 && absl::ascii_isupper(c) &&
        (absl::ascii_islower(camel[i - 1]) ||
         (i + 1 < camel.size() && absl::ascii_islower(camel[i + 1])))) {
      out.push_back('_');
    }
    out.push_back(absl::ascii_toupper(c));
  }
  return out;
}

bool IsLowerSnake(absl::string_view s) {
  if (s.empty() || !absl::ascii_islower(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_';
  });
}

bool IsPascal(absl::string_view s) {
  if (s.empty() || !absl::ascii_isupper(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return absl::ascii_isalnum(c); });
}

// Collects every problem as "<kind> <full name>: <what>".
class ContractChecker {
 public:
  void CheckFile(const pb::FileDescriptor* file) {
    if (file->package() != kPackage) return;
    for (int i = 0; i < file->service_count(); ++i) {
      CheckService(file->service(i));
    }
    for (int i = 0; i < file->message_type_count(); ++i) {
      CheckMessage(file->message_type(i));
    }
    for (int i = 0; i < file->enum_type_count(); ++i) {
      CheckEnum(file->enum_type(i));
    }
  }

  const std::vector<std::string>& problems() const { return problems_; }

 private:
  template <typename D>
  void RequireComment(absl::string_view kind, const D* d) {
    if (LeadingComment(d).empty()) {
      problems_.push_back(
          absl::StrCat(kind, " ", d->full_name(), ": no leading comment"));
    }
  }

  void Problem(absl::string_view kind, absl::string_view name,
               absl::string_view what) {
    problems_.push_back(absl::StrCat(kind, " ", name, ": ", what));
  }

  void CheckService(const pb::ServiceDescriptor* s) {
    RequireComment("service", s);
    if (!absl::StrContains(LeadingComment(s), "authorization: Bearer")) {
      Problem("service", s->full_name(),
              "comment does not document the \"authorization: Bearer\" "
              "credential");
    }
    for (int i = 0; i < s->method_count(); ++i) {
      const pb::MethodDescriptor* m = s->method(i);
      RequireComment("rpc", m);
      if (!absl::StrContains(LeadingComment(m), "Errors:")) {
        Problem("rpc", m->full_name(), "comment has no \"Errors:\" section");
      }
      CheckPagination(m);
    }
  }

  // List* rpcs follow AIP-158.
  void CheckPagination(const pb::MethodDescriptor* m) {
    if (!absl::StartsWith(m->name(), "List")) return;
    const pb::Descriptor* req = m->input_type();
    const pb::Descriptor* resp = m->output_type();
    auto has = [](const pb::Descriptor* d, const char* name,
                  pb::FieldDescriptor::Type type) {
      const pb::FieldDescriptor* f = d->FindFieldByName(name);
      return f != nullptr && f->type() == type && !f->is_repeated();
    };
    if (!has(req, "page_size", pb::FieldDescriptor::TYPE_INT32) ||
        !has(req, "page_token", pb::FieldDescriptor::TYPE_STRING) ||
        !has(resp, "next_page_token", pb::FieldDescriptor::TYPE_STRING)) {
      Problem("rpc", m->full_name(),
              "List rpc without int32 page_size, string page_token and "
              "string next_page_token");
    }
  }

  void CheckMessage(const pb::Descriptor* d) {
    // Map fields generate synthetic "XxxEntry" messages without source.
    if (d->options().map_entry()) return;
    RequireComment("message", d);
    if (!IsPascal(d->name())) {
      Problem("message", d->full_name(), "name is not PascalCase");
    }
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      RequireComment("field", f);
      if (!IsLowerSnake(f->name())) {
        Problem("field", f->full_name(), "name is not lower_snake_case");
      }
    }
    for (int i = 0; i < d->oneof_decl_count(); ++i) {
      const pb::OneofDescriptor* o = d->oneof_decl(i);
      // proto3 `optional` fields get a synthetic oneof with no source.
      if (o->is_synthetic()) continue;
      RequireComment("oneof", o);
    }
    for (int i = 0; i < d->nested_type_count(); ++i) {
      CheckMessage(d->nested_type(i));
    }
    for (int i = 0; i < d->enum_type_count(); ++i) {
      CheckEnum(d->enum_type(i));
    }
  }

  void CheckEnum(const pb::EnumDescriptor* e) {
    RequireComment("enum", e);
    const std::string prefix = UpperSnake(e->name()) + "_";
    if (e->value_count() == 0 || e->value(0)->number() != 0 ||
        e->value(0)->name() != prefix + "UNSPECIFIED") {
      Problem("enum", e->full_name(),
              absl::StrCat("first value must be ", prefix, "UNSPECIFIED = 0"));
    }
    for (int i = 0; i < e->value_count(); ++i) {
      const pb::EnumValueDescriptor* v = e->value(i);
      RequireComment("enum value", v);
      if (!absl::StartsWith(v->name(), prefix)) {
        Problem("enum value", v->full_name(),
                absl::StrCat("name does not start with ", prefix));
      }
    }
  }

  std::vector<std::string> problems_;
};

// --- Loading ---------------------------------------------------------------

// Builds every file of a descriptor set (as written by protoc with
// --include_source_info) into `pool`; returns those of package ftune.v1.
std::vector<const pb::FileDescriptor*> LoadDescriptorSet(
    const std::string& path, pb::DescriptorPool* pool) {
  std::vector<const pb::FileDescriptor*> ours;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  pb::FileDescriptorSet set;
  EXPECT_TRUE(set.ParseFromString(bytes.str())) << "cannot parse " << path;
  // protoc writes dependencies before dependents (--include_imports).
  for (const pb::FileDescriptorProto& fdp : set.file()) {
    const pb::FileDescriptor* file = pool->BuildFile(fdp);
    EXPECT_NE(file, nullptr) << "cannot build " << fdp.name();
    if (file != nullptr && file->package() == kPackage) ours.push_back(file);
  }
  return ours;
}

// --- docs/api.md against the descriptors ------------------------------------

// "Job" for ftune.v1 types, the full name ("google.protobuf.Empty") else.
std::string TypeName(const pb::Descriptor* d) {
  return d->file()->package() == kPackage ? d->name() : d->full_name();
}

// Whitespace runs become one space; backticks (Markdown code) are dropped.
std::string NormalizeText(absl::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '`') continue;
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// The first sentence of a comment: its first paragraph, whitespace
// collapsed, up to the first ". " that is followed by a capital letter.
std::string FirstSentence(const std::string& comment) {
  const std::string text =
      NormalizeText(comment.substr(0, comment.find("\n\n")));
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    if (text[i] == '.' && text[i + 1] == ' ' &&
        absl::ascii_isupper(static_cast<unsigned char>(text[i + 2]))) {
      return text.substr(0, i + 1);
    }
  }
  return text;
}

// "[stream ]Request -> [stream ]Response" as the reference tables write it.
std::string Signature(const pb::MethodDescriptor* m) {
  return absl::StrCat(m->client_streaming() ? "stream " : "",
                      TypeName(m->input_type()), " \u2192 ",
                      m->server_streaming() ? "stream " : "",
                      TypeName(m->output_type()));
}

struct DocRow {
  std::string rpc;
  std::string signature;
  std::string summary;
  int line = 0;
};

// Every problem of `markdown` (docs/api.md) against the services, messages
// and enums of `files`, as "api.md:LINE: ..." or "api.md: ...".
std::vector<std::string> CheckApiDoc(
    const std::string& markdown,
    const std::vector<const pb::FileDescriptor*>& files) {
  std::vector<std::string> problems;
  const std::vector<std::string> lines = absl::StrSplit(markdown, '\n');

  // The reference: "### Service" headings with "| `Rpc` | sig | text |"
  // rows, inside "## Reference: every rpc".
  std::map<std::string, std::vector<DocRow>> reference;
  std::map<std::string, int> heading_line;
  // The overview: "| `Service` | who | `Rpc`, ... |" rows of "## Services".
  std::map<std::string, std::string> services_rows;
  std::string section;
  std::string service;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    const int number = static_cast<int>(i) + 1;
    if (absl::StartsWith(line, "## ")) {
      section = line.substr(3);
      service.clear();
      continue;
    }
    if (section == "Reference: every rpc" && absl::StartsWith(line, "### ")) {
      service = line.substr(4);
      heading_line[service] = number;
      reference[service];
      continue;
    }
    if (!absl::StartsWith(line, "| `")) continue;
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    if (section == "Services" && cells.size() >= 4) {
      services_rows[NormalizeText(cells[1])] = cells[3];
    }
    if (section == "Reference: every rpc" && !service.empty()) {
      if (cells.size() != 5) {
        problems.push_back(absl::StrCat(
            "api.md:", number, ": a reference row has ", cells.size() - 2,
            " cells, not 3 (rpc, request \u2192 response, what it does)"));
        continue;
      }
      reference[service].push_back({NormalizeText(cells[1]),
                                    NormalizeText(cells[2]),
                                    NormalizeText(cells[3]), number});
    }
  }
  if (heading_line.empty()) {
    problems.push_back(
        "api.md: no \"## Reference: every rpc\" section with \"### Service\" "
        "tables");
  }

  std::set<std::string> known_services;
  for (const pb::FileDescriptor* file : files) {
    for (int s = 0; s < file->service_count(); ++s) {
      const pb::ServiceDescriptor* sd = file->service(s);
      known_services.insert(sd->name());
      auto rows = reference.find(sd->name());
      if (rows == reference.end()) {
        problems.push_back(absl::StrCat("api.md: no \"### ", sd->name(),
                                        "\" table in the reference"));
        continue;
      }
      std::set<std::string> rpcs;
      for (int m = 0; m < sd->method_count(); ++m) {
        const pb::MethodDescriptor* md = sd->method(m);
        rpcs.insert(md->name());
        const std::string want_summary = FirstSentence(LeadingComment(md));
        auto row =
            std::find_if(rows->second.begin(), rows->second.end(),
                         [&](const DocRow& r) { return r.rpc == md->name(); });
        if (row == rows->second.end()) {
          problems.push_back(absl::StrCat(
              "api.md:", heading_line[sd->name()], ": ", sd->name(),
              " has no row for ", md->name(), "; add: | `", md->name(), "` | ",
              Signature(md), " | ", want_summary, " |"));
          continue;
        }
        if (row->signature != Signature(md)) {
          problems.push_back(absl::StrCat(
              "api.md:", row->line, ": ", md->full_name(), " is \"",
              Signature(md), "\", the doc says \"", row->signature, "\""));
        }
        if (row->summary != want_summary) {
          problems.push_back(
              absl::StrCat("api.md:", row->line, ": ", md->full_name(),
                           ": the proto comment starts \"", want_summary,
                           "\", the doc says \"", row->summary, "\""));
        }
        auto overview = services_rows.find(sd->name());
        if (overview == services_rows.end()) {
          problems.push_back(
              absl::StrCat("api.md: the Services table has no "
                           "row for ",
                           sd->name()));
        } else if (!absl::StrContains(overview->second,
                                      absl::StrCat("`", md->name(), "`"))) {
          problems.push_back(
              absl::StrCat("api.md: the Services table's row of ", sd->name(),
                           " does not name `", md->name(), "`"));
        }
      }
      for (const DocRow& row : rows->second) {
        if (rpcs.count(row.rpc) == 0) {
          problems.push_back(absl::StrCat("api.md:", row.line, ": ", sd->name(),
                                          " has no rpc ", row.rpc));
        }
      }
    }
  }
  for (const auto& [name, line] : heading_line) {
    if (known_services.count(name) == 0) {
      problems.push_back(
          absl::StrCat("api.md:", line, ": no service ", name, " in ftune.v1"));
    }
  }

  // Every top-level message and enum is named somewhere.
  auto named = [&](const std::string& name) {
    return absl::StrContains(markdown, absl::StrCat("`", name, "`"));
  };
  for (const pb::FileDescriptor* file : files) {
    for (int i = 0; i < file->message_type_count(); ++i) {
      if (!named(file->message_type(i)->name())) {
        problems.push_back(absl::StrCat("api.md: message ",
                                        file->message_type(i)->name(), " (",
                                        file->name(), ") is not named"));
      }
    }
    for (int i = 0; i < file->enum_type_count(); ++i) {
      if (!named(file->enum_type(i)->name())) {
        problems.push_back(absl::StrCat("api.md: enum ",
                                        file->enum_type(i)->name(), " (",
                                        file->name(), ") is not named"));
      }
    }
  }
  return problems;
}

std::string ReadSourceFile(const std::string& relative) {
  std::ifstream in(absl::StrCat(FTUNE_SOURCE_DIR, "/", relative));
  EXPECT_TRUE(in.good()) << "cannot open " << relative;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The build's descriptor set, loaded into its own pool (not the generated
// one), so that the source comments are available.
class DescriptorSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ours_ = LoadDescriptorSet(FTUNE_PROTO_DESCRIPTOR_SET, &pool_);
    ASSERT_FALSE(ours_.empty());
  }

  pb::DescriptorPool pool_;
  std::vector<const pb::FileDescriptor*> ours_;
};

TEST_F(DescriptorSetTest, HasEveryFileAndService) {
  std::vector<std::string> files;
  for (const auto* f : ours_) files.push_back(f->name());
  EXPECT_THAT(files, ::testing::IsSupersetOf({
                         "ftune/v1/common.proto",
                         "ftune/v1/job_spec.proto",
                         "ftune/v1/job.proto",
                         "ftune/v1/job_service.proto",
                         "ftune/v1/file.proto",
                         "ftune/v1/model.proto",
                         "ftune/v1/worker.proto",
                         "ftune/v1/admin.proto",
                         "ftune/v1/webhook.proto",
                     }));
  for (const char* service :
       {"ftune.v1.JobService", "ftune.v1.FileService", "ftune.v1.ModelService",
        "ftune.v1.AdminService", "ftune.v1.WorkerService",
        "ftune.v1.WebhookService"}) {
    EXPECT_NE(pool_.FindServiceByName(service), nullptr) << service;
  }
}

TEST_F(DescriptorSetTest, EverythingIsDocumentedAndFollowsConventions) {
  ASSERT_FALSE(ours_.empty());
  ContractChecker checker;
  for (const auto* f : ours_) checker.CheckFile(f);
  EXPECT_THAT(checker.problems(), ::testing::IsEmpty())
      << checker.problems().size() << " problem(s):\n  "
      << absl::StrJoin(checker.problems(), "\n  ");
}

// The descriptor set and the compiled C++ code come from the same protos.
TEST_F(DescriptorSetTest, MatchesCompiledCode) {
  // ftune_proto is a static library: a generated file's descriptor is in the
  // generated pool only if the binary links its object, so use one message
  // of each file.
  const pb::Message* one_per_file[] = {
      &ErrorInfo::default_instance(), &JobSpec::default_instance(),
      &Job::default_instance(),       &CreateJobRequest::default_instance(),
      &File::default_instance(),      &Model::default_instance(),
      &Worker::default_instance(),    &Tenant::default_instance(),
      &Webhook::default_instance(),
  };
  for (const pb::Message* m : one_per_file) {
    ASSERT_NE(m->GetDescriptor(), nullptr);
  }
  for (const pb::FileDescriptor* file : ours_) {
    const pb::FileDescriptor* compiled =
        pb::DescriptorPool::generated_pool()->FindFileByName(file->name());
    ASSERT_NE(compiled, nullptr) << file->name() << " is not compiled in";
    pb::FileDescriptorProto from_code;
    compiled->CopyTo(&from_code);
    compiled->CopyJsonNameTo(&from_code);
    pb::FileDescriptorProto from_set;
    file->CopyTo(&from_set);  // CopyTo leaves out source info
    file->CopyJsonNameTo(&from_set);
    pb::util::MessageDifferencer differ;
    std::string diff;
    differ.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differ.Compare(from_code, from_set)) << file->name() << ":\n"
                                                     << diff;
  }
}

// docs/api.md lists every rpc as the protos define it.
TEST_F(DescriptorSetTest, ApiDocMatchesTheProtos) {
  const std::vector<std::string> problems =
      CheckApiDoc(ReadSourceFile("docs/api.md"), ours_);
  EXPECT_THAT(problems, ::testing::IsEmpty())
      << problems.size() << " problem(s) in docs/api.md:\n  "
      << absl::StrJoin(problems, "\n  ");
}

// --- The checker itself catches what it should ------------------------------

std::vector<std::string> ProblemsOfSample(const std::string& name) {
  pb::DescriptorPool pool;
  ContractChecker checker;
  for (const auto* file : LoadDescriptorSet(
           absl::StrCat(FTUNE_PROTO_SAMPLES_DIR, "/", name, ".desc"), &pool)) {
    checker.CheckFile(file);
  }
  return checker.problems();
}

TEST(ContractCheckerTest, AcceptsDocumentedProto) {
  EXPECT_THAT(ProblemsOfSample("documented"), ::testing::IsEmpty());
}

TEST(ContractCheckerTest, ReportsEachUndocumentedElement) {
  EXPECT_THAT(
      ProblemsOfSample("undocumented"),
      ::testing::UnorderedElementsAre(
          "service ftune.v1.Bare: no leading comment",
          ::testing::HasSubstr("service ftune.v1.Bare: comment does not"),
          "rpc ftune.v1.Bare.GetThing: no leading comment",
          ::testing::HasSubstr("rpc ftune.v1.Bare.GetThing: comment has no"),
          "field ftune.v1.Thing.undocumented: no leading comment",
          "oneof ftune.v1.Thing.choice: no leading comment",
          "field ftune.v1.Thing.Inner.nested_undocumented: no leading comment",
          "message ftune.v1.Naked: no leading comment",
          "enum ftune.v1.Color: no leading comment",
          "enum value ftune.v1.COLOR_RED: no leading comment"));
}

TEST(ContractCheckerTest, ReportsConventionViolations) {
  EXPECT_THAT(
      ProblemsOfSample("bad_conventions"),
      ::testing::UnorderedElementsAre(
          ::testing::HasSubstr("rpc ftune.v1.S.ListThings: List rpc without"),
          "field ftune.v1.Thing.pageSize: name is not lower_snake_case",
          ::testing::HasSubstr("enum ftune.v1.JobColor: first value must be "
                               "JOB_COLOR_UNSPECIFIED = 0"),
          ::testing::HasSubstr(
              "enum value ftune.v1.UNSPECIFIED: name does not start")));
}

TEST(ContractCheckerTest, UpperSnake) {
  EXPECT_EQ(UpperSnake("JobState"), "JOB_STATE");
  EXPECT_EQ(UpperSnake("LrScheduler"), "LR_SCHEDULER");
  EXPECT_EQ(UpperSnake("ErrorReason"), "ERROR_REASON");
  EXPECT_EQ(UpperSnake("HTTPCode"), "HTTP_CODE");
}

TEST(ApiDocCheckerTest, FirstSentence) {
  EXPECT_EQ(FirstSentence(" Cancels a job. QUEUED or PAUSED: at once.\n"),
            "Cancels a job.");
  EXPECT_EQ(FirstSentence(" Renews it (e.g. after a restart): more\n text.\n"
                          "\n Second paragraph."),
            "Renews it (e.g. after a restart): more text.");
  EXPECT_EQ(FirstSentence(" Lists things.\n Errors: none.\n"), "Lists things.");
}

TEST(ApiDocCheckerTest, CatchesEveryKindOfDrift) {
  pb::DescriptorPool pool;
  const std::vector<const pb::FileDescriptor*> files = LoadDescriptorSet(
      absl::StrCat(FTUNE_PROTO_SAMPLES_DIR, "/documented.desc"), &pool);
  ASSERT_FALSE(files.empty());
  const std::string types =
      "`ListThingsRequest` `ListThingsResponse` `ThingColor`\n";
  const std::string services =
      "## Services\n\n| service | who | rpcs |\n|---|---|---|\n"
      "| `SampleService` | all | `ListThings` |\n\n";
  const std::string good =
      services +
      "## Reference: every rpc\n\n### SampleService\n\n"
      "| rpc | request \u2192 response | what it does |\n|---|---|---|\n"
      "| `ListThings` | `ListThingsRequest` \u2192 `ListThingsResponse` | "
      "Lists things. |\n" +
      types;
  EXPECT_THAT(CheckApiDoc(good, files), ::testing::IsEmpty());

  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string doc = good;
    const size_t at = doc.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return doc.replace(at, from.size(), to);
  };
  // A changed first sentence, a wrong signature, a stale row, a missing
  // row, a missing table, an unnamed type, an rpc missing from Services.
  EXPECT_THAT(CheckApiDoc(replaced("Lists things. |", "Lists stuff. |"), files),
              ::testing::ElementsAre(::testing::HasSubstr(
                  "the proto comment starts \"Lists things.\", the doc says "
                  "\"Lists stuff.\"")));
  EXPECT_THAT(CheckApiDoc(replaced("\u2192 `ListThingsResponse`",
                                   "\u2192 stream `ListThingsResponse`"),
                          files),
              ::testing::ElementsAre(::testing::HasSubstr(
                  "ftune.v1.SampleService.ListThings is \"ListThingsRequest "
                  "\u2192 ListThingsResponse\"")));
  EXPECT_THAT(
      CheckApiDoc(replaced("Lists things. |\n",
                           "Lists things. |\n| `Gone` | `A` \u2192 `B` | "
                           "Was here. |\n"),
                  files),
      ::testing::ElementsAre(
          ::testing::HasSubstr("SampleService has no rpc Gone")));
  EXPECT_THAT(
      CheckApiDoc(replaced("| `ListThings` | `ListThingsRequest`",
                           "| `ListStuff` | `ListThingsRequest`"),
                  files),
      ::testing::UnorderedElementsAre(
          ::testing::HasSubstr("SampleService has no row for ListThings; add: "
                               "| `ListThings` | ListThingsRequest \u2192 "
                               "ListThingsResponse | Lists things. |"),
          ::testing::HasSubstr("SampleService has no rpc ListStuff")));
  EXPECT_THAT(
      CheckApiDoc(replaced("### SampleService", "### OtherService"), files),
      ::testing::UnorderedElementsAre(
          ::testing::HasSubstr("no \"### SampleService\" table"),
          ::testing::HasSubstr("no service OtherService in ftune.v1")));
  EXPECT_THAT(CheckApiDoc(replaced("`ThingColor`", "ThingColor"), files),
              ::testing::ElementsAre(::testing::HasSubstr(
                  "enum ThingColor (documented.proto) is not named")));
  EXPECT_THAT(
      CheckApiDoc(replaced("| all | `ListThings` |", "| all | |"), files),
      ::testing::ElementsAre(::testing::HasSubstr(
          "the Services table's row of SampleService does not name "
          "`ListThings`")));
}

// --- Generated C++ types ----------------------------------------------

JobSpec SampleSpec() {
  JobSpec spec;
  spec.set_model("llama-3.2-1b");
  spec.set_training_file("file-abcdefghijklmnopqrstuvwx");
  spec.set_validation_split(0.1);
  spec.set_method(TRAINING_METHOD_QLORA);
  spec.mutable_lora()->set_rank(8);
  spec.mutable_lora()->set_alpha(16);
  spec.mutable_lora()->add_target_modules("q_proj");
  spec.mutable_lora()->add_target_modules("v_proj");
  spec.mutable_quantization()->set_type(QUANTIZATION_TYPE_NF4);
  spec.mutable_quantization()->set_double_quant(false);
  spec.mutable_quantization()->set_compute_dtype(COMPUTE_DTYPE_BF16);
  Hyperparameters* hp = spec.mutable_hyperparameters();
  hp->set_epochs(1.5);
  hp->set_learning_rate(1e-4);
  hp->set_lr_scheduler(LR_SCHEDULER_COSINE);
  hp->set_warmup_steps(10);
  hp->set_max_grad_norm(0.0);  // explicit 0 = no clipping, not "unset"
  hp->set_seed(42);
  spec.mutable_resources()->set_gpus(0);  // explicit CPU
  spec.set_priority(-5);
  (*spec.mutable_labels())["team"] = "search";
  spec.set_max_restarts(0);
  spec.set_suffix("support-bot");
  return spec;
}

TEST(GeneratedTypesTest, JobSpecRoundTripKeepsEveryField) {
  const JobSpec spec = SampleSpec();
  std::string wire;
  ASSERT_TRUE(spec.SerializeToString(&wire));
  JobSpec parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(spec, parsed))
      << parsed.DebugString();
  EXPECT_EQ(parsed.validation_case(), JobSpec::kValidationSplit);
  EXPECT_DOUBLE_EQ(parsed.validation_split(), 0.1);
  EXPECT_EQ(parsed.hyperparameters().length_case(), Hyperparameters::kEpochs);
  EXPECT_EQ(parsed.hyperparameters().warmup_case(),
            Hyperparameters::kWarmupSteps);
  EXPECT_EQ(parsed.labels().at("team"), "search");
}

TEST(GeneratedTypesTest, ExplicitZeroIsDistinctFromUnset) {
  JobSpec parsed;
  ASSERT_TRUE(parsed.ParseFromString(SampleSpec().SerializeAsString()));
  // Set to 0 on purpose: must survive the wire as "present".
  EXPECT_TRUE(parsed.has_max_restarts());
  EXPECT_EQ(parsed.max_restarts(), 0);
  EXPECT_TRUE(parsed.resources().has_gpus());
  EXPECT_EQ(parsed.resources().gpus(), 0);
  EXPECT_TRUE(parsed.hyperparameters().has_max_grad_norm());
  EXPECT_TRUE(parsed.quantization().has_double_quant());
  EXPECT_FALSE(parsed.quantization().double_quant());
  // Never set: absent, so the documented default applies.
  EXPECT_FALSE(parsed.hyperparameters().has_checkpoint_every_steps());
  EXPECT_FALSE(parsed.hyperparameters().has_gradient_checkpointing());
  JobSpec empty;
  EXPECT_FALSE(empty.has_max_restarts());
  EXPECT_FALSE(empty.resources().has_gpus());
  EXPECT_EQ(empty.method(), TRAINING_METHOD_UNSPECIFIED);
  EXPECT_EQ(empty.validation_case(), JobSpec::VALIDATION_NOT_SET);
}

TEST(GeneratedTypesTest, OneofMembersReplaceEachOther) {
  JobSpec spec;
  spec.set_validation_file("file-abcdefghijklmnopqrstuvwx");
  EXPECT_EQ(spec.validation_case(), JobSpec::kValidationFile);
  spec.set_validation_split(0.2);
  EXPECT_EQ(spec.validation_case(), JobSpec::kValidationSplit);
  EXPECT_FALSE(spec.has_validation_file());
  EXPECT_EQ(spec.validation_file(), "");

  Hyperparameters hp;
  hp.set_max_steps(100);
  hp.set_epochs(2);
  EXPECT_EQ(hp.length_case(), Hyperparameters::kEpochs);
  EXPECT_EQ(hp.max_steps(), 0);

  // A WatchJob message carries exactly one payload.
  WatchJobResponse msg;
  msg.set_sequence(7);
  msg.mutable_event()->set_type(JOB_EVENT_TYPE_STATE_CHANGED);
  msg.mutable_event()->set_from_state(JOB_STATE_QUEUED);
  msg.mutable_event()->set_to_state(JOB_STATE_RUNNING);
  EXPECT_EQ(msg.update_case(), WatchJobResponse::kEvent);
  msg.mutable_truncated()->set_resume_after_sequence(7);
  EXPECT_EQ(msg.update_case(), WatchJobResponse::kTruncated);
  EXPECT_FALSE(msg.has_event());
  WatchJobResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(msg.SerializeAsString()));
  EXPECT_EQ(parsed.truncated().resume_after_sequence(), 7);

  UploadFileRequest first;
  first.mutable_metadata()->set_filename("train.jsonl");
  first.mutable_metadata()->set_purpose(FILE_PURPOSE_FINE_TUNE_TRAIN);
  first.set_chunk("{\"text\":\"hi\"}\n");
  EXPECT_EQ(first.data_case(), UploadFileRequest::kChunk);
  EXPECT_FALSE(first.has_metadata());
}

TEST(GeneratedTypesTest, ServiceStubsAndNamesExist) {
  EXPECT_STREQ(JobService::service_full_name(), "ftune.v1.JobService");
  EXPECT_STREQ(FileService::service_full_name(), "ftune.v1.FileService");
  EXPECT_STREQ(ModelService::service_full_name(), "ftune.v1.ModelService");
  EXPECT_STREQ(AdminService::service_full_name(), "ftune.v1.AdminService");
  EXPECT_STREQ(WorkerService::service_full_name(), "ftune.v1.WorkerService");
  // Streaming shapes as documented.
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  const pb::ServiceDescriptor* jobs =
      pool->FindServiceByName(JobService::service_full_name());
  ASSERT_NE(jobs, nullptr);
  EXPECT_TRUE(jobs->FindMethodByName("WatchJob")->server_streaming());
  EXPECT_TRUE(jobs->FindMethodByName("StreamJobLog")->server_streaming());
  const pb::MethodDescriptor* upload =
      pool->FindMethodByName("ftune.v1.FileService.UploadFile");
  ASSERT_NE(upload, nullptr);
  EXPECT_TRUE(upload->client_streaming());
  EXPECT_FALSE(upload->server_streaming());
  EXPECT_TRUE(pool->FindMethodByName("ftune.v1.WorkerService.StreamCommands")
                  ->server_streaming());
  // Enum names used in ErrorInfo.current_state are the value names.
  EXPECT_EQ(JobState_Name(JOB_STATE_SUCCEEDED), "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(WorkerState_Name(WORKER_STATE_LOST), "WORKER_STATE_LOST");
}

}  // namespace
}  // namespace ftune::v1
