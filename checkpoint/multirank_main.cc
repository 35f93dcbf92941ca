// Multi-rank checkpoint checks, one mode per mpirun launch
// (multirank_test.sh runs them in sequence on one directory):
//
//   save DIR STAGE    6 steps at ZeRO STAGE, an async save after step 3
//                     while training goes on; every rank dumps its engine's
//                     master weights and moments at the save, rank 0 the
//                     losses of steps 4-6.
//   resume DIR STAGE  same world size and stage: resumes and must repeat
//                     steps 4-6 bit for bit.
//   load DIR STAGE    any world size and stage: after loading, every rank's
//                     master weights and moments must equal the dumps bit
//                     for bit; then trains 2 steps and saves again, and the
//                     new checkpoint must verify.
//
// Exits non-zero on any failed check, printing it.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/file_io.h"
#include "checkpoint/format.h"
#include "trainer/config.h"
#include "trainer/trainer.h"
#include "zero/communicator_factory.h"

namespace zt {
namespace ckpt {
namespace {

int g_failures = 0;
int g_rank = 0;

#define EXPECT_MR(cond, ...)                                             \
  do {                                                                   \
    if (!(cond)) {                                                       \
      ++g_failures;                                                      \
      std::fprintf(stderr, "rank %d: FAIL %s:%d: %s: %s\n", g_rank,      \
                   __FILE__, __LINE__, #cond,                            \
                   absl::StrCat(__VA_ARGS__).c_str());                   \
    }                                                                    \
  } while (0)

TrainConfig Config(int stage, const std::string& ckpt_dir) {
  auto c = ResolveConfig(
      "", {"model.n_layer=2", "model.n_head=2", "model.n_embd=32",
           "model.vocab_size=61", "data.synthetic.vocab_size=61",
           "model.max_seq_len=16", "batch.seq_len=16",
           "batch.micro_batch_size=2", "device=CPU", "eval.batches=0",
           "optimizer.warmup_steps=2", "max_steps=6",
           absl::StrCat("zero.stage=STAGE_", stage),
           // Buckets that do not line up with shards or tensors.
           "zero.reduce_bucket_size=5003", "zero.allgather_bucket_size=3001",
           "zero.comm_timeout_s=60", "checkpoint.dir=" + ckpt_dir});
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    std::exit(1);
  }
  return *c;
}

std::string DumpPath(const std::string& dir, int rank) {
  return absl::StrCat(dir, "/dump_rank_", rank, ".bin");
}

// [begin, end) as two int64, then master, exp_avg, exp_avg_sq.
std::string Dump(ZeroEngine& e, const std::string& path) {
  const Range r = e.opt_range();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&r.begin), 8);
  f.write(reinterpret_cast<const char*>(&r.end), 8);
  for (const float* p : {e.master(), e.moment1(), e.moment2()})
    f.write(reinterpret_cast<const char*>(p), r.size() * 4);
  f.close();
  return f.good() ? "" : "cannot write " + path;
}

// The three state arrays over [0, numel) assembled from every dump.
std::vector<std::vector<float>> ReadDumps(const std::string& dir,
                                          int64_t numel) {
  std::vector<std::vector<float>> all(3, std::vector<float>(numel, NAN));
  for (int r = 0;; ++r) {
    std::ifstream f(DumpPath(dir, r), std::ios::binary);
    if (!f.good()) {
      EXPECT_MR(r > 0, "no dump in ", dir);
      break;
    }
    int64_t b, e;
    f.read(reinterpret_cast<char*>(&b), 8);
    f.read(reinterpret_cast<char*>(&e), 8);
    for (auto& a : all) f.read(reinterpret_cast<char*>(a.data() + b), (e - b) * 4);
  }
  return all;
}

std::string LossesPath(const std::string& dir) { return dir + "/losses.txt"; }

std::string Run(const std::string& mode, const std::string& dir, int stage,
                Communicator* comm) {
  const std::string root = dir + "/ckpt";
  if (mode == "save") {
    auto t = Trainer::Create(Config(stage, root), comm);
    if (!t.ok()) return t.status().ToString();
    std::ostringstream losses;
    for (int s = 1; s <= 6; ++s) {
      auto r = (*t)->TrainStep();
      if (!r.ok()) return r.status().ToString();
      if (s > 3) losses.precision(17), losses << r->loss << "\n";
      if (s == 3) {
        const std::string err = Dump((*t)->engine(), DumpPath(dir, comm->rank()));
        if (!err.empty()) return err;
        if (auto st = (*t)->SaveCheckpoint(); !st.ok()) return st.ToString();
      }
      if (auto st = (*t)->checkpoint_writer()->Poll(); !st.ok())
        return st.ToString();
    }
    if (auto st = (*t)->FinishCheckpoints(); !st.ok()) return st.ToString();
    if (comm->rank() == 0) std::ofstream(LossesPath(dir)) << losses.str();
    return "";
  }
  TrainerOptions o;
  o.resume_from = root;
  const std::string root2 = dir + "/ckpt_" + mode + "_" +
                            std::to_string(comm->world_size()) + "_" +
                            std::to_string(stage);
  auto t = Trainer::Create(Config(stage, root2), comm, o);
  if (!t.ok()) return t.status().ToString();
  EXPECT_MR((*t)->step() == 3, "step ", (*t)->step());
  if (mode == "resume") {
    std::ifstream f(LossesPath(dir));
    for (int s = 4; s <= 6; ++s) {
      double want;
      f >> want;
      auto r = (*t)->TrainStep();
      if (!r.ok()) return r.status().ToString();
      EXPECT_MR(r->loss == want, "step ", s, ": loss ", r->loss,
                " after resuming, ", want, " uninterrupted");
    }
    return "";
  }
  if (mode != "load") return "unknown mode " + mode;
  ZeroEngine& e = (*t)->engine();
  const auto want = ReadDumps(dir, (*t)->model().layout().numel());
  const Range r = e.opt_range();
  const float* got[3] = {e.master(), e.moment1(), e.moment2()};
  for (int s = 0; s < 3; ++s) {
    const bool same = std::memcmp(got[s], want[s].data() + r.begin,
                                  r.size() * 4) == 0;
    EXPECT_MR(same, "state array ", s, " differs in [", r.begin, ", ", r.end,
              ")");
  }
  for (int s = 0; s < 2; ++s) {
    auto step = (*t)->TrainStep();
    if (!step.ok()) return step.status().ToString();
    EXPECT_MR(std::isfinite(step->loss), "loss ", step->loss);
  }
  if (auto st = (*t)->SaveCheckpoint(); !st.ok()) return st.ToString();
  if (auto st = (*t)->FinishCheckpoints(); !st.ok()) return st.ToString();
  if (comm->rank() == 0) {
    auto reader = CheckpointReader::Open(root2 + "/step_5");
    if (!reader.ok()) return reader.status().ToString();
    const absl::Status v = reader->VerifyAll();
    EXPECT_MR(v.ok(), v.ToString());
    EXPECT_MR(reader->manifest().world_size() == comm->world_size(), "world");
    EXPECT_MR(reader->manifest().shards_size() == comm->world_size(), "shards");
  }
  return "";
}

}  // namespace
}  // namespace ckpt
}  // namespace zt

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: multirank_main save|resume|load DIR STAGE\n");
    return 2;
  }
  auto comm =
      zt::CreateCommunicator(zt::CommunicatorBackend::kMpi, zt::Device::Cpu());
  if (!comm.ok()) {
    std::fprintf(stderr, "%s\n", comm.status().ToString().c_str());
    return 1;
  }
  zt::ckpt::g_rank = (*comm)->rank();
  const std::string error =
      zt::ckpt::Run(argv[1], argv[2], std::atoi(argv[3]), comm->get());
  if (!error.empty()) {
    std::fprintf(stderr, "rank %d: %s: %s\n", zt::ckpt::g_rank, argv[1],
                 error.c_str());
    return 1;
  }
  if (zt::ckpt::g_failures > 0) return 1;
  std::printf("rank %d of %d: %s at stage %s: OK\n", zt::ckpt::g_rank,
              (*comm)->world_size(), argv[1], argv[3]);
  return 0;
}
