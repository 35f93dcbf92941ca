#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace zt {

double LrSchedule::At(int64_t step) const {
  if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / warmup_steps;
  if (max_steps <= warmup_steps) return max_lr;
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / (max_steps - warmup_steps));
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * progress));
  return min_lr + coeff * (max_lr - min_lr);
}

}  // namespace zt
