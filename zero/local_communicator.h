#ifndef ZEROTRAIN_ZERO_LOCAL_COMMUNICATOR_H_
#define ZEROTRAIN_ZERO_LOCAL_COMMUNICATOR_H_

// World size 1 with no MPI and no NCCL: every collective is a copy (or
// nothing), so the trainer runs without any launcher.
//
// Contract: rank 0 of 1. Copies run on the options' stream (on a stream the
// communicator owns when that is null and the device is a GPU) and Wait()
// synchronizes it; on the CPU every collective is complete when it returns.
// Average equals sum (division by 1 is exact).

#include <memory>

#include "absl/status/statusor.h"
#include "core/device.h"
#include "zero/communicator.h"

namespace zt {

absl::StatusOr<std::unique_ptr<Communicator>> CreateLocalCommunicator(
    Device device = Device::Cpu());

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_LOCAL_COMMUNICATOR_H_
