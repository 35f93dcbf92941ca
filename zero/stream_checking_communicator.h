#ifndef ZEROTRAIN_ZERO_STREAM_CHECKING_COMMUNICATOR_H_
#define ZEROTRAIN_ZERO_STREAM_CHECKING_COMMUNICATOR_H_

// Test-only: a CPU communicator that, like host-staged MPI on a GPU, refuses
// (INVALID_ARGUMENT) every collective whose options carry no stream. A real
// CPU backend ignores the stream, so a caller that forgets it passes every
// CPU test and fails on the first GPU run; this one makes the CPU tests see it.
//
// It is rank 0 of `world_size` in one process: the other ranks are imaginary
// and contribute zeros (their all-gathered pieces are zero, and sums equal
// this rank's input). World size > 1 makes the engine take its multi-rank
// paths, which a real single rank skips. Every collective completes when it
// is started.

#include <memory>

#include "zero/communicator.h"

namespace zt {

std::unique_ptr<Communicator> NewStreamCheckingCommunicator(int world_size);

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_STREAM_CHECKING_COMMUNICATOR_H_
