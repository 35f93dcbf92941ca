// Crash safety and failure reporting of checkpoints, end to end with the
// `train` binary: a run killed (SIGKILL) at many points during a save, a
// save whose filesystem operation fails, and damaged checkpoints.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "checkpoint/file_io.h"
#include "checkpoint/format.h"
#include "checkpoint/testutil.h"
#include "gtest/gtest.h"

namespace zt {
namespace ckpt {
namespace {

using testing::ProcessResult;
using testing::ReadLosses;
using testing::ReadTree;
using testing::RunProcess;
using testing::TinyRunArgs;

constexpr char kTrain[] = "trainer/train";
constexpr int kSteps = 6;

struct Op {
  int index = 0;  // 1-based within its save
  std::string kind;
  std::string path;
};

// The operations of save `save` from a ZT_CKPT_TRACE file.
std::vector<Op> OpsOfSave(const std::string& trace, int save) {
  std::vector<Op> ops;
  std::ifstream f(trace);
  std::string line;
  while (std::getline(f, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    int s = 0;
    Op op;
    if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &s) ||
        !absl::SimpleAtoi(parts[1], &op.index)) {
      ADD_FAILURE() << "bad trace line: " << line;
      continue;
    }
    if (s != save) continue;
    op.kind = parts[2];
    op.path = parts[3];
    ops.push_back(op);
  }
  return ops;
}

// Index of the operation that commits save 2: the rename onto `latest`.
int LatestRenameIndex(const std::vector<Op>& ops) {
  for (const Op& op : ops) {
    if (op.kind == "rename" && absl::EndsWith(op.path, "/latest")) return op.index;
  }
  return -1;
}

std::string LatestStepName(const std::string& root) {
  auto latest = FindLatest(root);
  EXPECT_TRUE(latest.ok()) << latest.status();
  if (!latest.ok() || !*latest) return "";
  return std::string(absl::StripPrefix(**latest, root + "/"));
}

class CrashTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::NewTempDir("reference");
    const std::string jsonl = dir + "/metrics.jsonl";
    ProcessResult r =
        RunProcess(TinyRunArgs(kTrain, kSteps, jsonl, dir + "/ckpt", 2));
    ASSERT_TRUE(r.exited && r.exit_code == 0) << r.output;
    reference_ = new std::map<int64_t, std::string>(ReadLosses(jsonl));
    ASSERT_EQ(reference_->size(), kSteps);
  }

  // Resumes `root` to kSteps and expects every step after the checkpoint to
  // repeat the uninterrupted run's loss bit for bit.
  void ExpectResumeBitExact(const std::string& root, int64_t from_step,
                            const std::string& what) {
    const std::string jsonl = testing::NewTempDir("resume") + "/m.jsonl";
    std::vector<std::string> args = TinyRunArgs(kTrain, kSteps, jsonl, root, 2);
    args.push_back("--resume");
    ProcessResult r = RunProcess(args);
    ASSERT_TRUE(r.exited && r.exit_code == 0) << what << "\n" << r.output;
    const auto losses = ReadLosses(jsonl);
    ASSERT_EQ(losses.size(), kSteps - from_step) << what << "\n" << r.output;
    for (const auto& [step, loss] : losses) {
      EXPECT_GT(step, from_step) << what;
      EXPECT_EQ(loss, reference_->at(step)) << what << " step " << step;
    }
  }

  static std::map<int64_t, std::string>* reference_;
};

std::map<int64_t, std::string>* CrashTest::reference_ = nullptr;

TEST_F(CrashTest, KilledAnywhereInASaveLeavesALoadableCheckpointAndBitExactResume) {
  // Trace the second save of a run saving every 2 steps (keep=1, so the
  // second save also deletes the first, after committing). Every run has
  // the same max_steps: the LR schedule depends on it.
  const std::string trace_dir = testing::NewTempDir("trace");
  const std::string trace = trace_dir + "/trace.txt";
  ProcessResult t = RunProcess(
      TinyRunArgs(kTrain, kSteps, trace_dir + "/m.jsonl", trace_dir + "/ckpt", 2, 1),
      {{"ZT_CKPT_TRACE", trace}});
  ASSERT_TRUE(t.exited && t.exit_code == 0) << t.output;
  const std::vector<Op> ops = OpsOfSave(trace, 2);
  const int commit = LatestRenameIndex(ops);
  ASSERT_GT(commit, 0) << "no rename onto latest in save 2";
  ASSERT_GT(ops.size(), 30u);

  // Every operation that is not a plain data write (creates, fsyncs,
  // renames, unlinks, removals: where ordering bugs hide), plus writes
  // spread evenly over the shard file.
  std::set<int> points;
  std::vector<int> writes;
  for (const Op& op : ops) {
    if (op.kind == "write") {
      writes.push_back(op.index);
    } else {
      points.insert(op.index);
    }
  }
  for (size_t i = 0; i < writes.size(); i += std::max<size_t>(1, writes.size() / 12)) {
    points.insert(writes[i]);
  }
  points.insert(writes.back());
  ASSERT_GE(points.size(), 20u);

  for (int k : points) {
    const Op& op = ops[k - 1];
    const std::string what =
        absl::StrCat("killed at op ", k, "/", ops.size(), " (", op.kind, " ",
                     op.path, ")");
    const std::string dir = testing::NewTempDir("kill");
    const std::string root = dir + "/ckpt";
    ProcessResult r =
        RunProcess(TinyRunArgs(kTrain, kSteps, dir + "/m.jsonl", root, 2, 1),
                   {{"ZT_CKPT_FAULT", absl::StrCat("kill@2:", k)}});
    ASSERT_EQ(r.signal, SIGKILL) << what << "\n" << r.output;
    // Before the rename onto `latest` the first checkpoint is the newest
    // committed one; from it on, the second.
    const std::string expected = k <= commit ? "step_2" : "step_4";
    ASSERT_EQ(LatestStepName(root), expected) << what;
    auto reader = CheckpointReader::Open(root + "/" + expected);
    ASSERT_TRUE(reader.ok()) << what << ": " << reader.status();
    ASSERT_TRUE(reader->VerifyAll().ok()) << what << ": " << reader->VerifyAll();
    ExpectResumeBitExact(root, k <= commit ? 2 : 4, what);
    // The resumed run's saves clean up what the crash left behind.
    auto names = ListDirectory(root);
    ASSERT_TRUE(names.ok());
    for (const std::string& n : *names) {
      EXPECT_FALSE(absl::StrContains(n, ".tmp-") ||
                   absl::StrContains(n, ".deleting"))
          << what << ": leftover " << n;
    }
  }
}

TEST_F(CrashTest, FailedSaveKeepsThePreviousCheckpointAndFailsTheRun) {
  const std::string trace_dir = testing::NewTempDir("trace");
  const std::string trace = trace_dir + "/trace.txt";
  ProcessResult t = RunProcess(
      TinyRunArgs(kTrain, kSteps, trace_dir + "/m.jsonl", trace_dir + "/ckpt", 2),
      {{"ZT_CKPT_TRACE", trace}});
  ASSERT_TRUE(t.exited && t.exit_code == 0) << t.output;
  const std::vector<Op> ops = OpsOfSave(trace, 2);
  const int commit = LatestRenameIndex(ops);
  ASSERT_GT(commit, 0);
  // The failure is reported at the next save (step 6), which then does not
  // start. A disk that fills up at: the first shard write, the shard's fsync, the
  // manifest's write, the directory rename, the rename onto `latest`.
  std::vector<int> points;
  auto first = [&](absl::string_view kind, absl::string_view path_part) {
    for (const Op& op : ops) {
      if (op.kind == kind && absl::StrContains(op.path, path_part)) return op.index;
    }
    ADD_FAILURE() << "no " << kind << " of " << path_part;
    return 1;
  };
  points = {first("write", "shard_00000.bin"), first("fsync", "shard_00000.bin"),
            first("write", "manifest.pb"), first("rename", "/step_4"), commit};
  for (int k : points) {
    const Op& op = ops[k - 1];
    const std::string what =
        absl::StrCat("failed at op ", k, " (", op.kind, " ", op.path, ")");
    const std::string dir = testing::NewTempDir("fail");
    const std::string root = dir + "/ckpt";
    ProcessResult r =
        RunProcess(TinyRunArgs(kTrain, kSteps, dir + "/m.jsonl", root, 2),
                   {{"ZT_CKPT_FAULT", absl::StrCat("fail@2:", k)}});
    ASSERT_TRUE(r.exited) << what << "\n" << r.output;
    EXPECT_NE(r.exit_code, 0) << what << "\n" << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, "injected fault"))
        << what << "\n" << r.output;
    // The failing file, relative to the checkpoint root.
    const std::string file = op.path.substr(op.path.find("/ckpt/") + 6);
    EXPECT_TRUE(absl::StrContains(r.output, file)) << what << "\n" << r.output;
    ASSERT_EQ(LatestStepName(root), "step_2") << what;
    auto reader = CheckpointReader::Open(root + "/step_2");
    ASSERT_TRUE(reader.ok()) << what << ": " << reader.status();
    EXPECT_TRUE(reader->VerifyAll().ok()) << what;
    ExpectResumeBitExact(root, 2, what);
  }
}

TEST_F(CrashTest, AsyncWriteFailureSurfacesAtTheNextSave) {
  const std::string trace_dir = testing::NewTempDir("trace");
  const std::string trace = trace_dir + "/trace.txt";
  ProcessResult t = RunProcess(
      TinyRunArgs(kTrain, kSteps, trace_dir + "/m.jsonl", trace_dir + "/ckpt", 2),
      {{"ZT_CKPT_TRACE", trace}});
  ASSERT_TRUE(t.exited && t.exit_code == 0) << t.output;
  int first_write = 0;
  for (const Op& op : OpsOfSave(trace, 1)) {
    if (op.kind == "write") {
      first_write = op.index;
      break;
    }
  }
  ASSERT_GT(first_write, 0);
  const std::string dir = testing::NewTempDir("next_save");
  const std::string root = dir + "/ckpt";
  // Save 1 (step 2): its first shard write fails on the background thread.
  // Training goes on to step 4, whose save reports the failure.
  ProcessResult r = RunProcess(
      TinyRunArgs(kTrain, kSteps, dir + "/m.jsonl", root, 2),
      {{"ZT_CKPT_FAULT", absl::StrCat("fail@1:", first_write)}});
  ASSERT_TRUE(r.exited) << r.output;
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "injected fault")) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "step_2.tmp-w1/shard_00000.bin"))
      << r.output;
  const auto losses = ReadLosses(dir + "/m.jsonl");
  ASSERT_FALSE(losses.empty());
  EXPECT_EQ(losses.rbegin()->first, 4) << r.output;
  auto latest = FindLatest(root);
  ASSERT_TRUE(latest.ok());
  EXPECT_FALSE(latest->has_value()) << "nothing may be committed";
}

// A good checkpoint root (steps 2 and 4) to damage.
class DamagedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::NewTempDir("damaged");
    root_ = dir_ + "/ckpt";
    ProcessResult r =
        RunProcess(TinyRunArgs(kTrain, 4, dir_ + "/m.jsonl", root_, 2));
    ASSERT_TRUE(r.exited && r.exit_code == 0) << r.output;
    ASSERT_EQ(LatestStepName(root_), "step_4");
  }

  // Resumes with extra --set flags; expects failure with `code_name` and
  // every string in `mentions`, and no file under the root changed.
  void ExpectResumeFails(const std::vector<std::string>& sets, int exit_code,
                         const std::string& code_name,
                         const std::vector<std::string>& mentions) {
    const auto before = ReadTree(root_);
    std::vector<std::string> args =
        TinyRunArgs(kTrain, kSteps, dir_ + "/resume.jsonl", root_, 2);
    for (const std::string& s : sets) args.push_back("--set=" + s);
    args.push_back("--resume");
    ProcessResult r = RunProcess(args);
    ASSERT_TRUE(r.exited) << r.output;
    EXPECT_EQ(r.exit_code, exit_code) << r.output;
    EXPECT_TRUE(absl::StrContains(r.output, code_name)) << r.output;
    for (const std::string& m : mentions) {
      EXPECT_TRUE(absl::StrContains(r.output, m)) << m << "\n" << r.output;
    }
    EXPECT_FALSE(absl::StrContains(r.output, "step 5")) << r.output;
    EXPECT_TRUE(ReadTree(root_) == before) << "files changed under " << root_;
  }

  std::string dir_, root_;
};

TEST_F(DamagedCheckpointTest, FlippedShardByteIsDataLossNamingFileAndTensor) {
  const std::string shard = root_ + "/step_4/shard_00000.bin";
  std::string bytes = testing::ReadFileOrDie(shard);
  bytes[bytes.size() / 2] ^= 0x10;
  testing::WriteFileOrDie(shard, bytes);
  ExpectResumeFails({}, 1, "DATA_LOSS",
                    {shard, "checksum mismatch", "exp_avg"});
}

TEST_F(DamagedCheckpointTest, TruncatedShardIsDataLossNamingFile) {
  const std::string shard = root_ + "/step_4/shard_00000.bin";
  const std::string bytes = testing::ReadFileOrDie(shard);
  testing::WriteFileOrDie(shard, bytes.substr(0, bytes.size() - 100));
  ExpectResumeFails({}, 1, "DATA_LOSS", {shard, "truncated"});
}

TEST_F(DamagedCheckpointTest, MissingShardIsNotFoundNamingFile) {
  const std::string shard = root_ + "/step_4/shard_00000.bin";
  ASSERT_EQ(std::remove(shard.c_str()), 0);
  ExpectResumeFails({}, 1, "NOT_FOUND", {shard});
}

TEST_F(DamagedCheckpointTest, FlippedManifestByteIsDataLossNamingManifest) {
  const std::string manifest = root_ + "/step_4/manifest.pb";
  std::string bytes = testing::ReadFileOrDie(manifest);
  bytes[bytes.size() / 3] ^= 0x01;
  testing::WriteFileOrDie(manifest, bytes);
  ExpectResumeFails({}, 1, "DATA_LOSS", {manifest});
}

TEST_F(DamagedCheckpointTest, ManifestOfAnotherModelIsInvalidArgument) {
  ExpectResumeFails({"model.n_embd=32"}, 2, "INVALID_ARGUMENT",
                    {root_ + "/step_4/manifest.pb", "another model",
                     "n_embd=16", "n_embd=32"});
}

TEST_F(DamagedCheckpointTest, LatestNamingAMissingStepIsNotFound) {
  testing::WriteFileOrDie(root_ + "/latest", "step_8\n");
  ExpectResumeFails({}, 1, "NOT_FOUND", {root_ + "/step_8"});
}

}  // namespace
}  // namespace ckpt
}  // namespace zt
