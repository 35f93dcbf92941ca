// Logs a fixed five-step run through MetricsLogger into <out_dir>/metrics.jsonl
// and <out_dir>/tb/, for metrics_readback_test.py to check with outside
// readers. The values here and in that script must agree.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "absl/status/status.h"

#include "trainer/metrics.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  zt::MetricsOptions options;
  options.jsonl_path = out + "/metrics.jsonl";
  options.tensorboard_dir = out + "/tb";
  options.total_steps = 5;
  auto logger = zt::MetricsLogger::Create(options);
  if (!logger.ok()) {
    std::fprintf(stderr, "%s\n", logger.status().ToString().c_str());
    return 1;
  }
  for (int step = 1; step <= 5; ++step) {
    zt::StepMetrics m;
    m.step = step;
    m.loss = 4.0 - 0.5 * step;
    m.lr = 1e-3 * step;
    m.grad_norm = 1.0 / step;
    m.loss_scale = 65536;
    m.tokens_per_s = 1000.0 * step;
    m.mfu = 0.01 * step;
    m.peak_memory_bytes = int64_t{1} << (20 + step);
    m.extras["comm_elements"] = 100.0 * step;
    if (step == 3) {
      // An fp16 overflow step: the loss and norm are not finite.
      m.loss = std::numeric_limits<double>::quiet_NaN();
      m.grad_norm = std::numeric_limits<double>::infinity();
      m.loss_scale = 32768;
      m.skipped = true;
    }
    if (absl::Status s = (*logger)->Log(m); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (absl::Status s = (*logger)->LogEval(5, 2.25); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
