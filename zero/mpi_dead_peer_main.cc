// A job in which the last rank dies (_exit) before a collective. Each
// surviving rank prints what its Wait returned, one line:
//   "dead-peer result: rank R: <status>"
// and exits 3, so mpi_dead_peer_test.sh can check that the error names the
// collective and the rank instead of hanging.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "zero/communicator.h"
#include "zero/mpi_communicator.h"

int main() {
  auto comm = zt::CreateMpiCommunicator();
  if (!comm.ok()) {
    std::printf("dead-peer setup failed: %s\n", comm.status().ToString().c_str());
    return 2;
  }
  zt::Communicator& c = **comm;
  // Everyone is up before the victim leaves.
  if (absl::Status s = zt::Await(c.Barrier(), absl::Seconds(30)); !s.ok()) {
    std::printf("dead-peer setup barrier failed: %s\n", s.ToString().c_str());
    return 2;
  }
  if (c.rank() == c.world_size() - 1) {
    std::fflush(stdout);
    _exit(1);
  }
  std::vector<float> buf(7, 1.0f);
  zt::AllReduceOptions o;
  o.send = o.recv = buf.data();
  o.count = 7;
  const absl::Status s = zt::Await(c.AllReduce(o), absl::Seconds(1));
  std::printf("dead-peer result: rank %d: %s\n", c.rank(), s.ToString().c_str());
  std::fflush(stdout);
  // A normal return: the pending collective must not block the exit path.
  return 3;
}
