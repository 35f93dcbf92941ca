// Placeholder until the trainer lands: prints what this build can run on.
#include <cstdio>

#include "kernels/core/device.h"

int main() {
  std::printf("zerotrain train: built %s CUDA, %d GPU(s) visible\n",
              zt::BuiltWithCuda() ? "with" : "without", zt::CudaDeviceCount());
  std::printf("default config: (trainer not built yet)\n");
  return 0;
}
