#ifndef ZEROTRAIN_ZERO_TCP_RENDEZVOUS_H_
#define ZEROTRAIN_ZERO_TCP_RENDEZVOUS_H_

// Sends a few bytes from rank 0 to every other rank over TCP, for launchers
// that give each process WORLD_SIZE/RANK/MASTER_ADDR/MASTER_PORT and no MPI
// (torchrun-style scripts, Slurm without PMI). The NCCL backend uses it for
// its unique id.
//
// Rank 0 listens on `port` (all interfaces) and waits for world_size - 1
// peers; each peer connects to addr:port, retrying while rank 0 is not up
// yet, and says which rank it is; rank 0 answers every peer with the payload.
// Everything happens before `timeout` or fails with kDeadlineExceeded, whose
// message names the missing ranks (on rank 0) or the unreachable address (on
// the others).

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace zt {

struct TcpRendezvousOptions {
  std::string master_addr;  // Host name or address of rank 0.
  int master_port = 0;      // Port rank 0 listens on.
  int rank = 0;
  int world_size = 1;
  absl::Duration timeout = absl::Minutes(2);
};

// On rank 0 returns `payload` after every peer received it; on the others
// returns what rank 0 sent (`payload` is ignored there).
absl::StatusOr<std::string> TcpBroadcastFromRank0(const TcpRendezvousOptions& options,
                                                  absl::string_view payload);

}  // namespace zt

#endif  // ZEROTRAIN_ZERO_TCP_RENDEZVOUS_H_
