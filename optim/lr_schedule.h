#ifndef ZEROTRAIN_OPTIM_LR_SCHEDULE_H_
#define ZEROTRAIN_OPTIM_LR_SCHEDULE_H_

#include <cstdint>

namespace zt {

// Linear warmup to max_lr over warmup_steps (step 0 gets max_lr/warmup),
// then cosine decay to min_lr at max_steps, as llm.c.
struct LrSchedule {
  double max_lr = 0;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t max_steps = 1;

  double At(int64_t step) const;
};

}  // namespace zt

#endif  // ZEROTRAIN_OPTIM_LR_SCHEDULE_H_
