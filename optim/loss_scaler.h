#ifndef ZEROTRAIN_OPTIM_LOSS_SCALER_H_
#define ZEROTRAIN_OPTIM_LOSS_SCALER_H_

// The fp16 loss scaler, with DeepSpeed's knobs and semantics
// (deepspeed/runtime/fp16/loss_scaler.py, DynamicLossScaler):
// - a step whose gradients hold inf/nan is skipped;
// - dynamic: on overflow the scale is divided by 2 once `hysteresis`
//   overflows have been absorbed (never below min_scale); after
//   `window` consecutive clean steps since the last overflow it doubles,
//   and the hysteresis budget refills;
// - static: the scale never changes, overflowing steps are still skipped.

#include <cstdint>

namespace zt {

struct LossScalerOptions {
  bool dynamic = true;
  double static_scale = 1.0;        // used when !dynamic
  int initial_scale_power = 16;     // dynamic: start at 2^power
  int64_t window = 1000;            // clean steps before doubling
  int hysteresis = 2;               // overflows absorbed before halving
  // Refill the hysteresis budget after every clean step, not only when the
  // scale grows (DeepSpeed's consecutive_hysteresis).
  bool consecutive_hysteresis = false;
  double min_scale = 1.0;
  double factor = 2.0;
};

struct LossScalerState {
  double scale = 1.0;
  int64_t iteration = 0;           // updates seen
  int64_t last_overflow_iteration = -1;
  int hysteresis_left = 0;
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options);

  double scale() const { return state_.scale; }
  // Records one step's outcome; returns true when the step must be skipped.
  bool Update(bool overflow);

  const LossScalerState& state() const { return state_; }
  void Restore(const LossScalerState& state) { state_ = state; }

 private:
  LossScalerOptions options_;
  LossScalerState state_;
};

}  // namespace zt

#endif  // ZEROTRAIN_OPTIM_LOSS_SCALER_H_
