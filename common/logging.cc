#include "common/logging.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace ftune {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("FTUNE_LOG_LEVEL");
  LogLevel level = LogLevel::kInfo;
  if (env != nullptr) ParseLogLevel(env, &level);
  return level;
}

std::atomic<int>& MinLevelStorage() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

}  // namespace

void SetMinLogLevel(LogLevel level) {
  MinLevelStorage().store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel MinLogLevel() {
  return static_cast<LogLevel>(
      MinLevelStorage().load(std::memory_order_relaxed));
}

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  if (upper == "INFO") {
    *level = LogLevel::kInfo;
  } else if (upper == "WARNING" || upper == "WARN") {
    *level = LogLevel::kWarning;
  } else if (upper == "ERROR") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

namespace internal {

LogMessage::LogMessage(const char* file, int line, LogLevel level)
    : level_(level) {
  static const char kLetters[] = {'I', 'W', 'E', 'F'};
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm parts;
  gmtime_r(&tv.tv_sec, &parts);
  const char* base = std::strrchr(file, '/');
  base = base != nullptr ? base + 1 : file;
  char prefix[96];
  std::snprintf(
      prefix, sizeof(prefix), "%c%02d%02d %02d:%02d:%02d.%06ld %d %s:%d] ",
      kLetters[static_cast<int>(level)], parts.tm_mon + 1, parts.tm_mday,
      parts.tm_hour, parts.tm_min, parts.tm_sec, static_cast<long>(tv.tv_usec),
      static_cast<int>(getpid()), base, line);
  stream_ << prefix;
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string text = stream_.str();
  // One write so lines from different threads do not interleave.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
  if (level_ == LogLevel::kFatal) std::abort();
}

}  // namespace internal
}  // namespace ftune
