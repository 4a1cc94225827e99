// Minimal leveled logging to stderr (Debian 12's Abseil has no absl/log).
//
//   FTUNE_LOG(INFO) << "listening on " << port;
//   FTUNE_LOG(FATAL) << "...";   // logs, then aborts.
//
// Each message is one line: "I1125 05:41:03.123456 1234 file.cc:42] text".
// Thread-safe: a message is assembled locally and written with one write(2).
// The minimum level comes from SetMinLogLevel() or env FTUNE_LOG_LEVEL
// (INFO, WARNING, ERROR); it defaults to INFO.
#ifndef FTUNE_COMMON_LOGGING_H_
#define FTUNE_COMMON_LOGGING_H_

#include <sstream>
#include "absl/strings/string_view.h"

namespace ftune {

enum class LogLevel { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Parses "INFO" / "WARNING" / "ERROR" (case-insensitive); false if unknown.
bool ParseLogLevel(absl::string_view text, LogLevel* level);

namespace internal {

class LogMessage {
 public:
  LogMessage(const char* file, int line, LogLevel level);
  ~LogMessage();  // Writes the line; aborts for kFatal.
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Swallows a stream expression so that disabled levels cost one comparison.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace ftune

#define FTUNE_LOG_LEVEL_INFO ::ftune::LogLevel::kInfo
#define FTUNE_LOG_LEVEL_WARNING ::ftune::LogLevel::kWarning
#define FTUNE_LOG_LEVEL_ERROR ::ftune::LogLevel::kError
#define FTUNE_LOG_LEVEL_FATAL ::ftune::LogLevel::kFatal

#define FTUNE_LOG(level)                                           \
  (FTUNE_LOG_LEVEL_##level < ::ftune::MinLogLevel())               \
      ? (void)0                                                    \
      : ::ftune::internal::LogVoidify() &                          \
            ::ftune::internal::LogMessage(__FILE__, __LINE__,      \
                                          FTUNE_LOG_LEVEL_##level) \
                .stream()

#define FTUNE_CHECK(cond)                                               \
  (cond) ? (void)0                                                      \
         : ::ftune::internal::LogVoidify() &                            \
               ::ftune::internal::LogMessage(__FILE__, __LINE__,        \
                                             ::ftune::LogLevel::kFatal) \
                       .stream()                                        \
                   << "Check failed: " #cond " "

#endif  // FTUNE_COMMON_LOGGING_H_
