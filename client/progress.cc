#include "client/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/output.h"

namespace ftune::client {
namespace {

// Points the step rate is measured over: recent enough to follow a change
// of speed, enough to smooth out one slow step.
constexpr size_t kRateWindow = 20;

constexpr const char* kLevels[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// A part of a line: its renderings from widest to narrowest. `steps` holds
// one rank per reduction: narrowing to variants[1], [2], ..., then dropping
// it; an empty `steps` keeps it always. Fitting a line takes the pending
// reduction of the highest rank first.
struct Segment {
  std::vector<std::string> variants;
  const char* separator = "  ";  // before it, unless it comes first
  std::vector<int> steps;
  size_t chosen = 0;
  bool dropped = false;

  size_t taken() const { return dropped ? chosen + 1 : chosen; }
};

size_t LineWidth(const std::vector<Segment>& segments) {
  size_t width = 0;
  bool first = true;
  for (const Segment& s : segments) {
    if (s.dropped) continue;
    if (!first) width += DisplayWidth(s.separator);
    width += DisplayWidth(s.variants[s.chosen]);
    first = false;
  }
  return width;
}

// Cuts `text` to at most `width` code points.
std::string Truncate(const std::string& text, size_t width) {
  size_t columns = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte
    if (columns == width) return text.substr(0, i);
    ++columns;
  }
  return text;
}

// Narrows and drops segments by rank until the line fits, then widens
// again what the later drops made room for.
std::string Fit(std::vector<Segment> segments, int width) {
  const size_t limit = width > 0 ? static_cast<size_t>(width) : 0;
  while (LineWidth(segments) > limit) {
    Segment* next = nullptr;
    for (Segment& s : segments) {
      if (s.taken() >= s.steps.size()) continue;
      if (next == nullptr || s.steps[s.taken()] > next->steps[next->taken()]) {
        next = &s;
      }
    }
    if (next == nullptr) break;
    if (next->chosen + 1 < next->variants.size()) {
      ++next->chosen;
    } else {
      next->dropped = true;
    }
  }
  for (Segment& s : segments) {
    while (!s.dropped && s.chosen > 0) {
      --s.chosen;
      if (LineWidth(segments) <= limit) continue;
      ++s.chosen;
      break;
    }
  }
  std::string line;
  for (const Segment& s : segments) {
    if (s.dropped) continue;
    if (!line.empty()) line += s.separator;
    line += s.variants[s.chosen];
  }
  return Truncate(line, limit);
}

std::string Bar(double fraction, int cells) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int full = static_cast<int>(std::floor(fraction * cells));
  std::string bar = "[";
  for (int i = 0; i < cells; ++i) bar += i < full ? "█" : "░";
  return bar + "]";
}

std::vector<std::string> BarVariants(double fraction) {
  return {Bar(fraction, 20), Bar(fraction, 10)};
}

std::string Rate(double tokens_per_second) {
  if (tokens_per_second >= 1e6) {
    return absl::StrFormat("%.1fM tok/s", tokens_per_second / 1e6);
  }
  if (tokens_per_second >= 1e4) {
    return absl::StrFormat("%.1fk tok/s", tokens_per_second / 1e3);
  }
  return absl::StrFormat("%.0f tok/s", tokens_per_second);
}

std::string Loss(double loss) {
  if (std::isnan(loss)) return "loss nan";
  if (std::isinf(loss)) return loss > 0 ? "loss inf" : "loss -inf";
  return absl::StrFormat("loss %.4f", loss);
}

}  // namespace

void TrainingProgress::SetJob(const v1::Job& job) {
  if (job.progress().total_steps() > 0) {
    total_steps_ = job.progress().total_steps();
  }
  // A snapshot reflects every record before it, so its step is current.
  if (job.progress().step() > 0) step_ = job.progress().step();
  if (job.progress().has_eta()) {
    server_eta_ = absl::Seconds(job.progress().eta().seconds()) +
                  absl::Nanoseconds(job.progress().eta().nanos());
  } else {
    server_eta_.reset();
  }
}

void TrainingProgress::Add(const v1::MetricPoint& point) {
  // A restarted attempt resumes from a checkpoint, at an earlier step: the
  // rate starts over.
  if (!recent_.empty() && point.step() < recent_.back().step) recent_.clear();
  step_ = point.step();
  recent_.push_back({TimeOf(point.time()), point.step()});
  while (recent_.size() > kRateWindow) recent_.pop_front();
  if (point.tokens_per_second() > 0) {
    tokens_per_second_ = point.tokens_per_second();
  }
  if (point.has_train_loss()) {
    loss_ = point.train_loss();
    losses_.push_back(point.train_loss());
    while (losses_.size() > kSparklinePoints) losses_.pop_front();
  }
}

TrainingView TrainingProgress::View() const {
  TrainingView view;
  view.step = step_;
  view.total_steps = total_steps_;
  view.tokens_per_second = tokens_per_second_;
  view.loss = loss_;
  view.losses.assign(losses_.begin(), losses_.end());
  if (recent_.size() >= 2 && total_steps_ > 0) {
    const int64_t steps = recent_.back().step - recent_.front().step;
    const absl::Duration took = recent_.back().time - recent_.front().time;
    if (steps > 0 && took > absl::ZeroDuration()) {
      const int64_t left = std::max<int64_t>(total_steps_ - step_, 0);
      view.eta = took * (static_cast<double>(left) / steps);
    }
  }
  if (!view.eta.has_value()) view.eta = server_eta_;
  return view;
}

std::string RenderTrainingLine(const TrainingView& view, int width) {
  std::vector<Segment> segments;
  const bool known_total = view.total_steps > 0;
  const double fraction =
      known_total ? static_cast<double>(view.step) / view.total_steps : 0;
  // Reduction ranks, first taken first: narrow the bar, narrow the
  // sparkline twice, drop the bar, drop the sparkline, then tokens/s, ETA,
  // loss and the step count.
  if (known_total) {
    segments.push_back({BarVariants(fraction), "  ", {9, 6}});
    segments.push_back(
        {{absl::StrFormat("%5.1f%%", std::min(fraction, 1.0) * 100)},
         "  ",
         {}});
    segments.push_back(
        {{absl::StrCat("step ", view.step, "/", view.total_steps)}, "  ", {1}});
  } else {
    segments.push_back({{absl::StrCat("step ", view.step)}, "  ", {}});
  }
  if (view.eta.has_value()) {
    segments.push_back({{"eta " + FormatEta(*view.eta)}, "  ", {3}});
  }
  if (view.tokens_per_second > 0) {
    segments.push_back({{Rate(view.tokens_per_second)}, "  ", {4}});
  }
  if (view.loss.has_value()) {
    segments.push_back({{Loss(*view.loss)}, "  ", {2}});
  }
  if (!view.losses.empty()) {
    std::vector<std::string> sparks;
    std::vector<int> steps;
    const int ranks[] = {8, 7};
    for (size_t n : {size_t{kSparklinePoints}, size_t{20}, size_t{10}}) {
      if (n < view.losses.size() || sparks.empty()) {
        if (!sparks.empty()) steps.push_back(ranks[sparks.size() - 1]);
        const size_t from = view.losses.size() > n ? view.losses.size() - n : 0;
        sparks.push_back(Sparkline(std::vector<double>(
            view.losses.begin() + from, view.losses.end())));
      }
    }
    steps.push_back(5);
    segments.push_back({sparks, " ", steps});
  }
  return Fit(std::move(segments), width);
}

std::string RenderTrainingLine(const std::vector<v1::MetricPoint>& points,
                               int64_t total_steps, int width) {
  TrainingProgress progress;
  v1::Job job;
  job.mutable_progress()->set_total_steps(total_steps);
  progress.SetJob(job);
  for (const v1::MetricPoint& p : points) progress.Add(p);
  return RenderTrainingLine(progress.View(), width);
}

std::string Sparkline(const std::vector<double>& values) {
  double lo = INFINITY;
  double hi = -INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  std::string line;
  for (double v : values) {
    if (!std::isfinite(v)) {
      line += " ";
    } else if (hi <= lo) {
      line += kLevels[3];
    } else {
      const long level = std::lround((v - lo) / (hi - lo) * 7);
      line += kLevels[std::clamp(level, 0L, 7L)];
    }
  }
  return line;
}

std::string FormatEta(absl::Duration eta) {
  const int64_t s =
      std::max<int64_t>(absl::ToInt64Seconds(eta + absl::Milliseconds(500)), 0);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, s / 60 % 60);
  return absl::StrFormat("%dd%02dh", s / 86400, s / 3600 % 24);
}

std::string RenderTransferLine(const TransferView& view, int width) {
  std::vector<Segment> segments;
  if (view.total > 0) {
    const double fraction = static_cast<double>(view.bytes) / view.total;
    segments.push_back({BarVariants(fraction), "  ", {6, 3}});
    segments.push_back(
        {{absl::StrFormat("%3.0f%%", std::min(fraction, 1.0) * 100)},
         "  ",
         {}});
    segments.push_back({{absl::StrCat(FormatBytes(view.bytes), " / ",
                                      FormatBytes(view.total))},
                        "  ",
                        {1}});
  } else {
    segments.push_back({{FormatBytes(view.bytes)}, "  ", {}});
  }
  const double seconds = absl::ToDoubleSeconds(view.elapsed);
  if (seconds >= 0.2) {
    segments.push_back(
        {{absl::StrCat(FormatBytes(static_cast<int64_t>(view.bytes / seconds)),
                       "/s")},
         "  ",
         {4}});
  }
  if (!view.label.empty()) segments.push_back({{view.label}, "  ", {5}});
  return Fit(std::move(segments), width);
}

size_t DisplayWidth(absl::string_view text) {
  size_t columns = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++columns;
  }
  return columns;
}

TransferMeter::TransferMeter(std::ostream& err, const TerminalInfo& terminal,
                             std::string label, int64_t total)
    : line_(err),
      terminal_(terminal),
      enabled_(terminal.stderr_is_tty),
      label_(std::move(label)),
      total_(total),
      start_(absl::Now()) {}

void TransferMeter::Update(int64_t bytes) {
  if (!enabled_) return;
  last_update_ = absl::Now();
  if (last_update_ - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = last_update_;
  Draw(bytes, last_update_);
}

void TransferMeter::Done(int64_t bytes) {
  if (!enabled_) return;
  // The rate up to the last byte, not counting the wait for the server's
  // answer after it.
  Draw(bytes,
       last_update_ == absl::InfinitePast() ? absl::Now() : last_update_);
  line_.Keep();
}

void TransferMeter::Draw(int64_t bytes, absl::Time when) {
  line_.Draw(RenderTransferLine({label_, bytes, total_, when - start_},
                                terminal_.Columns() - 1));
}

void LiveLine::Draw(const std::string& line) {
  out_ << "\r" << line << "\033[K";
  out_.flush();
  drawn_ = true;
}

void LiveLine::Clear() {
  if (!drawn_) return;
  out_ << "\r\033[K";
  out_.flush();
  drawn_ = false;
}

void LiveLine::Keep() {
  if (!drawn_) return;
  out_ << "\n";
  out_.flush();
  drawn_ = false;
}

}  // namespace ftune::client
