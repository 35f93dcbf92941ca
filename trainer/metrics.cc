#include "trainer/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace zt {
namespace {

constexpr const char* kFixedKeys[] = {
    "step",    "loss",         "lr",  "grad_norm",         "loss_scale",
    "skipped", "tokens_per_s", "mfu", "peak_memory_bytes", "val_loss"};

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void AppendField(std::string* out, absl::string_view key,
                 absl::string_view value) {
  if (out->size() > 1) out->push_back(',');
  AppendJsonString(out, key);
  out->push_back(':');
  out->append(value.data(), value.size());
}

absl::Status CheckExtraKeys(const StepMetrics& m) {
  for (const auto& [key, value] : m.extras) {
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", m.step, ": empty metrics extras key"));
    }
    for (const char* fixed : kFixedKeys) {
      if (key == fixed) {
        return absl::InvalidArgumentError(
            absl::StrCat("step ", m.step, ": metrics extras key '", key,
                         "' clashes with a built-in field"));
      }
    }
  }
  return absl::OkStatus();
}

std::string FormatBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= (1ll << 30)) return absl::StrFormat("%.2f GiB", b / (1ll << 30));
  if (b >= (1ll << 20)) return absl::StrFormat("%.1f MiB", b / (1ll << 20));
  if (b >= (1ll << 10)) return absl::StrFormat("%.1f KiB", b / (1ll << 10));
  return absl::StrFormat("%d B", bytes);
}

std::string StepOfTotal(int64_t step, int64_t total_steps) {
  return total_steps > 0 ? absl::StrCat(step, "/", total_steps)
                         : absl::StrCat(step);
}

}  // namespace

std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[32];
  // Shortest round-trip form; never "nan"/"inf" here, and its exponent form
  // ("1e-05") is valid JSON.
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

std::string FormatStepJson(const StepMetrics& m) {
  std::string out = "{";
  AppendField(&out, "step", absl::StrCat(m.step));
  AppendField(&out, "loss", JsonNumber(m.loss));
  AppendField(&out, "lr", JsonNumber(m.lr));
  AppendField(&out, "grad_norm", JsonNumber(m.grad_norm));
  AppendField(&out, "loss_scale", JsonNumber(m.loss_scale));
  AppendField(&out, "skipped", m.skipped ? "true" : "false");
  AppendField(&out, "tokens_per_s", JsonNumber(m.tokens_per_s));
  AppendField(&out, "mfu", JsonNumber(m.mfu));
  AppendField(&out, "peak_memory_bytes", absl::StrCat(m.peak_memory_bytes));
  for (const auto& [key, value] : m.extras) {
    AppendField(&out, key, JsonNumber(value));
  }
  out.push_back('}');
  return out;
}

std::string FormatEvalJson(int64_t step, double val_loss) {
  std::string out = "{";
  AppendField(&out, "step", absl::StrCat(step));
  AppendField(&out, "val_loss", JsonNumber(val_loss));
  out.push_back('}');
  return out;
}

double EstimateEtaSeconds(int64_t first_step, absl::Duration elapsed,
                          int64_t step, int64_t total_steps) {
  if (total_steps <= 0 || step <= first_step) return -1.0;
  if (step >= total_steps) return 0.0;
  const double per_step =
      absl::ToDoubleSeconds(elapsed) / static_cast<double>(step - first_step);
  return per_step * static_cast<double>(total_steps - step);
}

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string FormatStepLine(const StepMetrics& m, int64_t total_steps,
                           double eta_seconds) {
  std::string line = absl::StrFormat(
      "step %s | loss %.4f | lr %.3e | grad norm %.3f | scale %g | "
      "%.0f tok/s | mfu %s | peak mem %s",
      StepOfTotal(m.step, total_steps), m.loss, m.lr, m.grad_norm, m.loss_scale,
      m.tokens_per_s,
      // MFU is measured against a GPU's peak; on the CPU there is none.
      std::isfinite(m.mfu) ? absl::StrFormat("%.1f%%", 100.0 * m.mfu) : std::string("n/a"),
      FormatBytes(m.peak_memory_bytes));
  if (eta_seconds >= 0)
    absl::StrAppend(&line, " | eta ", FormatDuration(eta_seconds));
  if (m.skipped) absl::StrAppend(&line, " | SKIPPED (overflow)");
  return line;
}

std::string FormatProgressBar(const StepMetrics& m, int64_t total_steps,
                              double eta_seconds, int width) {
  std::string bar;
  if (total_steps > 0) {
    const double frac =
        std::clamp(static_cast<double>(m.step) / total_steps, 0.0, 1.0);
    const int filled = static_cast<int>(frac * width);
    bar = absl::StrCat("[", std::string(filled, '#'),
                       std::string(width - filled, '.'), "] ",
                       StepOfTotal(m.step, total_steps),
                       absl::StrFormat(" %3.0f%%", 100.0 * frac));
  } else {
    bar = absl::StrCat("step ", m.step);
  }
  absl::StrAppendFormat(&bar, " | loss %.4f | %.0f tok/s", m.loss,
                        m.tokens_per_s);
  if (eta_seconds >= 0)
    absl::StrAppend(&bar, " | eta ", FormatDuration(eta_seconds));
  if (m.skipped) absl::StrAppend(&bar, " | skipped");
  return bar;
}

std::string FormatEvalLine(int64_t step, double val_loss) {
  return absl::StrFormat("eval step %d | val loss %.4f", step, val_loss);
}

absl::StatusOr<std::unique_ptr<MetricsLogger>> MetricsLogger::Create(
    const MetricsOptions& options) {
  if (options.print_every < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics print_every is ", options.print_every, "; must be >= 1"));
  }
  if (options.total_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics total_steps is ", options.total_steps, "; must be >= 0"));
  }
  const bool bar = options.progress_bar && options.console != nullptr &&
                   isatty(fileno(options.console));
  std::unique_ptr<MetricsLogger> logger(new MetricsLogger(options, bar));
  if (!options.jsonl_path.empty()) {
    const std::string& path = options.jsonl_path;
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      ZT_RETURN_IF_ERROR(Annotate(CreateDirectories(path.substr(0, slash)),
                                  "metrics JSONL file '" + path + "'"));
    }
    logger->jsonl_ = std::fopen(path.c_str(), "a");
    if (logger->jsonl_ == nullptr) {
      return PathErrorStatus(
          errno, absl::StrCat("cannot open metrics JSONL file '", path, "'"));
    }
  }
  if (!options.tensorboard_dir.empty()) {
    ZT_ASSIGN_OR_RETURN(logger->tensorboard_,
                        TensorBoardWriter::Open(options.tensorboard_dir));
  }
  return logger;
}

MetricsLogger::~MetricsLogger() {
  if (bar_open_) WriteConsole("\n");
  if (jsonl_ != nullptr) std::fclose(jsonl_);
}

std::string MetricsLogger::tensorboard_file() const {
  return tensorboard_ ? tensorboard_->path() : std::string();
}

void MetricsLogger::WriteConsole(const std::string& text) {
  std::fputs(text.c_str(), options_.console);
  std::fflush(options_.console);
}

absl::Status MetricsLogger::Log(const StepMetrics& m) {
  ZT_RETURN_IF_ERROR(CheckExtraKeys(m));

  if (jsonl_ != nullptr) {
    const std::string line = FormatStepJson(m) + "\n";
    if (std::fputs(line.c_str(), jsonl_) < 0 || std::fflush(jsonl_) != 0) {
      return PathErrorStatus(errno, absl::StrCat("cannot write metrics file '",
                                                 options_.jsonl_path, "'"));
    }
  }

  if (tensorboard_ != nullptr) {
    std::vector<std::pair<std::string, double>> scalars = {
        {"train/loss", m.loss},
        {"train/lr", m.lr},
        {"train/grad_norm", m.grad_norm},
        {"train/loss_scale", m.loss_scale},
        {"train/skipped", m.skipped ? 1.0 : 0.0},
        {"train/tokens_per_s", m.tokens_per_s},
        {"train/mfu", m.mfu},
        {"train/peak_memory_bytes", static_cast<double>(m.peak_memory_bytes)},
    };
    for (const auto& [key, value] : m.extras) {
      scalars.emplace_back("train/" + key, value);
    }
    ZT_RETURN_IF_ERROR(tensorboard_->WriteScalars(m.step, scalars));
  }

  if (options_.console != nullptr) {
    const absl::Time now = absl::Now();
    if (!first_) first_.emplace(m.step, now);
    const double eta = EstimateEtaSeconds(first_->first, now - first_->second,
                                          m.step, options_.total_steps);
    const bool last =
        options_.total_steps > 0 && m.step >= options_.total_steps;
    if (bar_) {
      // "\r" returns to the bar's start and "\x1b[K" clears what a longer
      // previous bar left behind.
      WriteConsole(absl::StrCat("\r",
                                FormatProgressBar(m, options_.total_steps, eta),
                                "\x1b[K", last ? "\n" : ""));
      bar_open_ = !last;
    } else if (m.step % options_.print_every == 0 || last) {
      WriteConsole(FormatStepLine(m, options_.total_steps, eta) + "\n");
    }
  }
  return absl::OkStatus();
}

absl::Status MetricsLogger::LogEval(int64_t step, double val_loss) {
  if (jsonl_ != nullptr) {
    const std::string line = FormatEvalJson(step, val_loss) + "\n";
    if (std::fputs(line.c_str(), jsonl_) < 0 || std::fflush(jsonl_) != 0) {
      return PathErrorStatus(errno, absl::StrCat("cannot write metrics file '",
                                                 options_.jsonl_path, "'"));
    }
  }
  if (tensorboard_ != nullptr) {
    ZT_RETURN_IF_ERROR(tensorboard_->WriteScalar(step, "eval/loss", val_loss));
  }
  if (options_.console != nullptr) {
    // An eval line interrupts the bar; the next Log redraws it below.
    WriteConsole(absl::StrCat(bar_open_ ? "\r\x1b[K" : "",
                              FormatEvalLine(step, val_loss), "\n"));
    bar_open_ = false;
  }
  return absl::OkStatus();
}

}  // namespace zt
