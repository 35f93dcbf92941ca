#include "kernels/op_context.h"

#include "absl/strings/str_cat.h"

namespace zt::kernels {

absl::Status CudaNotBuilt(const char* op) {
  return absl::FailedPreconditionError(absl::StrCat(
      op, ": a CUDA context was given but this binary was built without CUDA "
          "(rebuild with --config=cuda)"));
}

}  // namespace zt::kernels
