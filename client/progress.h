// Live progress lines for a terminal: the training line of `jobs watch`
// (percent, step/total, ETA, tokens/s, loss and a loss sparkline) and the
// transfer line of uploads and downloads (bytes, percent, MiB/s).
//
// Rendering is pure: a view (or the metric points themselves) and a width
// in, one line out, never wider than the width; LiveLine only writes it.
// Everything printed is one terminal column per code point.
//
// Not thread-safe: one TrainingProgress / LiveLine per command run.
#ifndef FTUNE_CLIENT_PROGRESS_H_
#define FTUNE_CLIENT_PROGRESS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/output.h"
#include "ftune/v1/job.pb.h"

namespace ftune::client {

// Train losses the sparkline shows at most.
inline constexpr int kSparklinePoints = 30;

// What the training line shows.
struct TrainingView {
  int64_t step = 0;
  int64_t total_steps = 0;            // 0: unknown (no percent, no bar)
  std::optional<absl::Duration> eta;  // unset: unknown
  double tokens_per_second = 0;       // <= 0: unknown
  std::optional<double> loss;         // latest train loss (may be NaN)
  std::vector<double> losses;         // recent train losses, oldest first
};

// Follows a job's metric points (and snapshots, for the total) and keeps
// what the training line needs. The ETA comes from the step rate over the
// recent points' own timestamps, so it does not depend on when they arrive.
class TrainingProgress {
 public:
  // From a WatchJob snapshot: total steps, and the server's ETA as a
  // fallback while the points are too few to tell a rate.
  void SetJob(const v1::Job& job);
  void Add(const v1::MetricPoint& point);
  TrainingView View() const;

 private:
  struct Sample {
    absl::Time time;
    int64_t step;
  };
  int64_t step_ = 0;
  int64_t total_steps_ = 0;
  std::optional<absl::Duration> server_eta_;
  double tokens_per_second_ = 0;
  std::optional<double> loss_;
  std::deque<double> losses_;
  std::deque<Sample> recent_;  // for the step rate
};

// The training line for `view`, at most `width` columns. As the width
// shrinks it narrows the bar (20 to 10 cells) and the sparkline (30 to 20
// to 10 points), drops the bar, then the sparkline, then tokens/s, the ETA,
// the loss and the step count, in that order; the percent goes last (cut
// to the width). What a later drop makes room for is widened again.
std::string RenderTrainingLine(const TrainingView& view, int width);

// The same from the points themselves (in sequence order).
std::string RenderTrainingLine(const std::vector<v1::MetricPoint>& points,
                               int64_t total_steps, int width);

// One of ▁▂▃▄▅▆▇█ per value, scaled between the finite minimum and
// maximum; a non-finite value is a space, and when all finite values are
// equal each is ▄.
std::string Sparkline(const std::vector<double>& values);

// "42s", "3m10s", "2h05m", "3d04h".
std::string FormatEta(absl::Duration eta);

// What the transfer line shows.
struct TransferView {
  std::string label;  // e.g. the file name; may be empty
  int64_t bytes = 0;  // done so far
  int64_t total = 0;  // 0: unknown
  absl::Duration elapsed;
};

// "[█████░░░░░]   50%  1.0 MiB / 2.0 MiB  4.1 MiB/s  train.jsonl", at
// most `width` columns (narrows the bar, drops the label, the rate, the
// bar, then the sizes).
std::string RenderTransferLine(const TransferView& view, int width);

// Terminal columns of UTF-8 text (code points).
size_t DisplayWidth(absl::string_view text);

// Redraws one line in place on a terminal stream ("\r", the line, erase to
// the end). Text printed around it must Clear() it first.
class LiveLine {
 public:
  explicit LiveLine(std::ostream& out) : out_(out) {}
  ~LiveLine() { Clear(); }

  void Draw(const std::string& line);
  // Erases the line if one is drawn.
  void Clear();
  // Leaves the line drawn last in place and moves below it.
  void Keep();
  bool drawn() const { return drawn_; }

 private:
  std::ostream& out_;
  bool drawn_ = false;
};

// The transfer line of one upload or download on stderr, drawn only when
// stderr is a terminal, at most every 100 ms.
class TransferMeter {
 public:
  TransferMeter(std::ostream& err, const TerminalInfo& terminal,
                std::string label, int64_t total);

  // `bytes` done so far (of every file, for a multi-file download).
  void Update(int64_t bytes);
  // Draws the final line and leaves it in place.
  void Done(int64_t bytes);
  // Erases the line (before an error message).
  void Clear() { line_.Clear(); }

 private:
  void Draw(int64_t bytes, absl::Time when);

  LiveLine line_;
  TerminalInfo terminal_;
  bool enabled_;
  std::string label_;
  int64_t total_;
  absl::Time start_;
  absl::Time last_draw_ = absl::InfinitePast();
  absl::Time last_update_ = absl::InfinitePast();
};

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_PROGRESS_H_
