#ifndef ZEROTRAIN_TRAINER_METRICS_H_
#define ZEROTRAIN_TRAINER_METRICS_H_

#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/tensorboard_writer.h"

namespace zt {

// What the trainer reports for one optimizer step.
struct StepMetrics {
  int64_t step = 0;
  // Mean cross-entropy over the step's tokens (nats).
  double loss = std::numeric_limits<double>::quiet_NaN();
  // Learning rate applied at this step.
  double lr = 0.0;
  // Global L2 norm of the gradients before clipping (unscaled).
  double grad_norm = std::numeric_limits<double>::quiet_NaN();
  // fp16 loss scale in force for this step; 1 when not scaling.
  double loss_scale = 1.0;
  // True when the update was skipped (fp16 overflow).
  bool skipped = false;
  // Training throughput over the step.
  double tokens_per_s = 0.0;
  // Model FLOPs utilisation as a fraction of the device's peak (0.123 = 12.3%).
  double mfu = 0.0;
  // Peak device (or host) memory in bytes so far.
  int64_t peak_memory_bytes = 0;
  // Further named values (per-category memory, elements communicated, ...),
  // logged after the fixed fields in key order. Keys must be non-empty and
  // differ from the fixed field names and "val_loss".
  std::map<std::string, double> extras;
};

struct MetricsOptions {
  // File to append one JSON object per logged step to (parent directories are
  // created); empty: none. Appending makes a resumed run continue the file.
  std::string jsonl_path;
  // Directory for a new TensorBoard event file (created if missing); empty:
  // none.
  std::string tensorboard_dir;
  // Redraw one progress bar with ETA instead of printing lines; honoured only
  // when `console` is a terminal, so logs piped to a file stay line-based.
  bool progress_bar = true;
  // Last step of the run, for the bar and the ETA; 0: unknown.
  int64_t total_steps = 0;
  // Console lines are printed for steps divisible by this and for the last
  // step; the JSONL file and TensorBoard get every logged step. >= 1.
  int64_t print_every = 1;
  // Where lines and the bar go; nullptr: silent.
  std::FILE* console = stdout;
};

// Fans the trainer's per-step metrics out to the console, a JSONL file and
// TensorBoard. JSONL lines are
//   {"step":N,"loss":x,"lr":x,"grad_norm":x,"loss_scale":x,"skipped":b,
//    "tokens_per_s":x,"mfu":x,"peak_memory_bytes":N,<extras...>}
// and, for evaluations, {"step":N,"val_loss":x}; non-finite numbers are
// written as null. TensorBoard tags are "train/<field>" (skipped as 0/1, extras
// as "train/<key>") and "eval/loss". Every sink is flushed per call. Not
// thread-safe: call from the training loop only.
class MetricsLogger {
 public:
  // Opens the configured sinks. Errors name the path: kInvalidArgument for a
  // bad option or a path of the wrong kind (a directory as the JSONL file, a
  // file as a directory), kPermissionDenied, kNotFound, ... following errno.
  static absl::StatusOr<std::unique_ptr<MetricsLogger>> Create(
      const MetricsOptions& options);

  // Ends an unfinished progress bar with a newline.
  ~MetricsLogger();
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;

  // kInvalidArgument for a bad extras key; a write error names the file.
  absl::Status Log(const StepMetrics& metrics);
  absl::Status LogEval(int64_t step, double val_loss);

  // Empty when that sink is off.
  const std::string& jsonl_path() const { return options_.jsonl_path; }
  std::string tensorboard_file() const;
  bool uses_progress_bar() const { return bar_; }

 private:
  MetricsLogger(const MetricsOptions& options, bool bar)
      : options_(options), bar_(bar) {}
  void WriteConsole(const std::string& text);

  MetricsOptions options_;
  bool bar_;
  std::FILE* jsonl_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  // Where the ETA's rate is measured from: the first logged step.
  std::optional<std::pair<int64_t, absl::Time>> first_;
  // True while the cursor sits at the end of a drawn bar.
  bool bar_open_ = false;
};

// Formatting, exposed for tests.

// Shortest decimal that reads back as the same double; "null" for NaN/Inf.
std::string JsonNumber(double value);
// The JSONL object for one step / one evaluation, without a newline.
std::string FormatStepJson(const StepMetrics& metrics);
std::string FormatEvalJson(int64_t step, double val_loss);
// Seconds left at the rate observed since `first_step` took `elapsed` to
// reach `step`; negative when unknown (no total, or no progress yet).
double EstimateEtaSeconds(int64_t first_step, absl::Duration elapsed,
                          int64_t step, int64_t total_steps);
// "45s", "3m07s", "2h05m".
std::string FormatDuration(double seconds);
// The console line for a step; the ETA is left out when negative.
std::string FormatStepLine(const StepMetrics& metrics, int64_t total_steps,
                           double eta_seconds);
// The progress bar for a step (no "\r"), `width` cells wide.
std::string FormatProgressBar(const StepMetrics& metrics, int64_t total_steps,
                              double eta_seconds, int width = 30);
std::string FormatEvalLine(int64_t step, double val_loss);

}  // namespace zt

#endif  // ZEROTRAIN_TRAINER_METRICS_H_
