#include "optim/loss_scaler.h"

#include <algorithm>
#include <cmath>

namespace zt {

LossScaler::LossScaler(const LossScalerOptions& options) : options_(options) {
  state_.scale = options.dynamic ? std::ldexp(1.0, options.initial_scale_power)
                                 : options.static_scale;
  state_.hysteresis_left = std::max(1, options.hysteresis);
}

bool LossScaler::Update(bool overflow) {
  if (options_.dynamic) {
    if (overflow) {
      if (options_.hysteresis <= 1 || state_.hysteresis_left <= 1) {
        state_.scale = std::max(state_.scale / options_.factor, options_.min_scale);
      } else {
        --state_.hysteresis_left;
      }
      state_.last_overflow_iteration = state_.iteration;
    } else {
      if (options_.consecutive_hysteresis) state_.hysteresis_left = std::max(1, options_.hysteresis);
      if ((state_.iteration - state_.last_overflow_iteration) % options_.window == 0) {
        state_.hysteresis_left = std::max(1, options_.hysteresis);
        state_.scale *= options_.factor;
      }
    }
  }
  ++state_.iteration;
  return overflow;
}

}  // namespace zt
