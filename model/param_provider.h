#ifndef ZEROTRAIN_MODEL_PARAM_PROVIDER_H_
#define ZEROTRAIN_MODEL_PARAM_PROVIDER_H_

// The contract between a model and whatever holds its parameters and
// gradients (the ZeRO engine, or a test's flat buffers): the model reaches
// them one unit of the parameter layout at a time, so the same model code
// runs replicated (stages 0-2) and with sharded parameters (stage 3, where
// Acquire() all-gathers a unit). The engine sees a model only through this.

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zt {

// A unit's parameters and gradients during one pass. The element at global
// offset o (begin <= o < the unit's end) is at params + (o - begin) elements.
struct UnitBuffers {
  const void* params = nullptr;
  void* grads = nullptr;  // backward only
  int64_t begin = 0;
  // Backward: `grads` holds zeros on entry (the step's first micro-batch, or
  // a freshly zeroed slot), so the first op that writes a gradient may
  // overwrite it instead of adding to it.
  bool grads_zeroed = false;
};

class ParamProvider {
 public:
  enum class Pass { kForward, kBackward };
  virtual ~ParamProvider() = default;
  // Units are acquired in pass order; the embedding unit stays acquired for
  // the whole pass because the tied LM head uses it at the other end.
  virtual absl::StatusOr<UnitBuffers> Acquire(int unit, Pass pass) = 0;
  // Backward: the unit's gradients for this micro-batch are complete.
  virtual absl::Status GradientsReady(int unit) = 0;
  virtual absl::Status Release(int unit, Pass pass) = 0;
};

}  // namespace zt

#endif  // ZEROTRAIN_MODEL_PARAM_PROVIDER_H_
