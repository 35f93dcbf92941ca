#include "checkpoint/testutil.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "checkpoint/file_io.h"
#include "glog/logging.h"

extern char** environ;

namespace zt {
namespace ckpt {
namespace testing {

std::string NewTempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string dir =
      absl::StrCat(base ? base : "/tmp", "/", name, "_", getpid(), "_",
                   counter++);
  CHECK(RemoveRecursively(dir).ok());
  CHECK(MakeDirectories(dir).ok());
  return dir;
}

ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env) {
  const std::string out_path = NewTempDir("proc") + "/output";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (env.count(key) == 0) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(),
                             envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ProcessResult r;
  if (rc != 0) {
    r.output = absl::StrCat("posix_spawn ", argv[0], " failed: ", rc);
    return r;
  }
  int status = 0;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status)) {
    r.exited = true;
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  r.output = ReadFileOrDie(out_path);
  return r;
}

std::vector<std::string> TinyRunArgs(const std::string& train_binary,
                                     int max_steps,
                                     const std::string& metrics_jsonl,
                                     const std::string& ckpt_dir, int interval,
                                     int keep) {
  std::vector<std::string> a = {train_binary};
  for (const std::string& s : std::vector<std::string>{
           "model.n_layer=2", "model.n_head=2", "model.n_embd=16",
           "model.max_seq_len=16", "batch.micro_batch_size=2",
           "batch.seq_len=16", "device=CPU", "eval.batches=0",
           "logging.interval=1", "logging.progress_bar=NEVER",
           "optimizer.warmup_steps=2",
           absl::StrCat("max_steps=", max_steps),
           absl::StrCat("logging.metrics_jsonl=", metrics_jsonl),
           absl::StrCat("checkpoint.dir=", ckpt_dir),
           absl::StrCat("checkpoint.interval=", interval),
           absl::StrCat("checkpoint.keep=", keep)}) {
    a.push_back("--set=" + s);
  }
  return a;
}

std::map<int64_t, std::string> ReadLosses(const std::string& metrics_jsonl) {
  std::map<int64_t, std::string> out;
  std::ifstream f(metrics_jsonl);
  std::string line;
  while (std::getline(f, line)) {
    const size_t s = line.find("\"step\":");
    const size_t l = line.find("\"loss\":");
    if (s == std::string::npos || l == std::string::npos) continue;
    int64_t step;
    const std::string step_text =
        line.substr(s + 7, line.find_first_of(",}", s) - (s + 7));
    CHECK(absl::SimpleAtoi(step_text, &step)) << line;
    out[step] = line.substr(l + 7, line.find_first_of(",}", l) - (l + 7));
  }
  return out;
}

std::map<std::string, std::string> ReadTree(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::vector<std::string> stack = {""};
  while (!stack.empty()) {
    const std::string rel = stack.back();
    stack.pop_back();
    const std::string path = rel.empty() ? dir : JoinPath(dir, rel);
    auto names = ListDirectory(path);
    CHECK(names.ok()) << names.status();
    for (const std::string& n : *names) {
      const std::string r = rel.empty() ? n : JoinPath(rel, n);
      if (IsDirectory(JoinPath(dir, r))) {
        stack.push_back(r);
      } else {
        out[r] = ReadFileOrDie(JoinPath(dir, r));
      }
    }
  }
  return out;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CHECK(f.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
  CHECK(f.good()) << "cannot write " << path;
}

}  // namespace testing
}  // namespace ckpt
}  // namespace zt
