#include "kernels/cpu_parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"

namespace zt::kernels {
namespace {

// True on pool workers and on a thread inside ParallelFor: nested calls run
// inline.
thread_local bool in_parallel_for = false;

// Why not OpenMP: at the end of a parallel region the caller waits for every
// thread of the team, including one the OS has not scheduled yet. On a
// loaded machine (ranks or a build sharing two cores) that wait made the
// default model's steps 6x slower (3.2k instead of 20k tokens/s; this pool,
// with one core busy elsewhere: 11.6k against OpenMP's 7.9k). Here the calling thread claims chunks
// too and waits only for chunks a worker has already claimed, so a worker that wakes late costs
// nothing.
class CpuPool {
 public:
  explicit CpuPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }

  ~CpuPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // One job at a time: returns false, doing nothing, while another thread's
  // job runs (the caller then runs its chunks itself).
  bool TryRun(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
    std::unique_lock<std::mutex> running(run_mu_, std::try_to_lock);
    if (!running.owns_lock()) return false;
    Job job{n, grain, (n + grain - 1) / grain, &fn};
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_.store(&job, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      gen = (Generation(state_.load(std::memory_order_relaxed)) + 1) & 0xffffff;
      state_.store((gen << (2 * kChunkBits)) | (static_cast<uint64_t>(job.chunks) << kChunkBits),
                   std::memory_order_release);
    }
    wake_.notify_all();
    while (ClaimAndRun(gen)) {
    }
    // Only chunks a worker already claimed (and is running) remain.
    while (done_.load(std::memory_order_acquire) < job.chunks) std::this_thread::yield();
    return true;
  }

 private:
  struct Job {
    int64_t n, grain, chunks;
    absl::FunctionRef<void(int64_t, int64_t)>* fn;
  };

  // state_ packs the generation (24 bits), the job's chunk count and the
  // next unclaimed chunk (20 bits each) in one word, so a claim is one CAS
  // that fails if the job changed, and a worker that wakes after its job
  // ended never touches the (gone) Job. The Job is read only after a claim
  // succeeded: its caller waits for that chunk, so it is still alive.
  static constexpr int kChunkBits = 20;

 public:
  // The most chunks one job may have (ParallelFor splits larger ranges).
  static constexpr int64_t kMaxJobChunks = int64_t{1} << (kChunkBits - 1);

 private:
  static constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;
  static uint64_t Generation(uint64_t s) { return s >> (2 * kChunkBits); }

  bool ClaimAndRun(uint64_t gen) {
    uint64_t s = state_.load(std::memory_order_acquire);
    do {
      if (Generation(s) != gen || (s & kChunkMask) >= ((s >> kChunkBits) & kChunkMask)) {
        return false;
      }
    } while (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel));
    const int64_t c = static_cast<int64_t>(s & kChunkMask);
    const Job* job = job_.load(std::memory_order_acquire);
    (*job->fn)(c * job->grain, std::min(job->n, (c + 1) * job->grain));
    done_.fetch_add(1, std::memory_order_release);
    return true;
  }

  void WorkerLoop() {
    in_parallel_for = true;
    uint64_t seen = 0;
    for (;;) {
      // Back-to-back ops start within microseconds of each other: poll for
      // a while (yielding, so a loaded machine loses little) before sleeping.
      uint64_t gen = Generation(state_.load(std::memory_order_acquire));
      const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
      for (int spin = 0; gen == seen; ++spin) {
        if (spin % 64 == 63 && std::chrono::steady_clock::now() > spin_until) break;
        std::this_thread::yield();
        gen = Generation(state_.load(std::memory_order_acquire));
      }
      if (gen == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || Generation(state_.load()) != seen; });
        if (stop_) return;
        gen = Generation(state_.load());
      }
      seen = gen;
      while (ClaimAndRun(gen)) {
      }
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::mutex run_mu_;
  std::atomic<const Job*> job_{nullptr};
  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> done_{0};
  std::vector<std::thread> workers_;
};

int CoresAvailable() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int DefaultThreads() {
  int n = 0;
  if (const char* env = std::getenv("OMP_NUM_THREADS");
      env != nullptr && absl::SimpleAtoi(env, &n) && n >= 1) {
    return n;
  }
  return CoresAvailable();
}

std::mutex pool_mu;
// Callers hold a reference for the length of a loop, so SetCpuThreads can
// swap pools while another thread's loop still runs on the old one.
std::shared_ptr<CpuPool>* pool = nullptr;

std::shared_ptr<CpuPool> Pool() {
  std::lock_guard<std::mutex> lock(pool_mu);
  // Leaked: workers may still be parked when the process exits.
  if (pool == nullptr) {
    pool = new std::shared_ptr<CpuPool>(std::make_shared<CpuPool>(DefaultThreads()));
    // A forked child has none of the workers (and perhaps a locked mutex):
    // it starts a pool of its own, leaking the parent's.
    pthread_atfork(nullptr, nullptr, [] {
      new (&pool_mu) std::mutex;
      pool = nullptr;
    });
  }
  return *pool;
}

void RunInline(int64_t n, int64_t grain, int64_t chunks,
               absl::FunctionRef<void(int64_t, int64_t)> fn) {
  for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
}

}  // namespace

void UseSingleThreadedBlas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

int CpuThreads() { return Pool()->threads(); }

void SetCpuThreads(int threads) {
  threads = std::max(1, threads);
  Pool();  // the first pool, and the fork handler
  std::lock_guard<std::mutex> lock(pool_mu);
  if ((*pool)->threads() == threads) return;
  *pool = std::make_shared<CpuPool>(threads);
}

void ShareCpuThreadsAmongLocalRanks(int local_ranks) {
  if (local_ranks <= 1 || std::getenv("OMP_NUM_THREADS") != nullptr) return;
  // A launcher that binds each rank to its own cores (Open MPI does for
  // small jobs) has already shared them out.
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online > 0 && CoresAvailable() < online) return;
  SetCpuThreads(CoresAvailable() / local_ranks);
}

void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks <= 1 || in_parallel_for) return RunInline(n, grain, chunks, fn);
  const std::shared_ptr<CpuPool> p = Pool();
  if (p->threads() <= 1) return RunInline(n, grain, chunks, fn);
  UseSingleThreadedBlas();
  in_parallel_for = true;
  // The pool's state word holds fewer chunks than a huge range may have:
  // such a range runs as several jobs, each starting on a chunk boundary, so
  // the chunks stay exactly those documented.
  const int64_t per_job = CpuPool::kMaxJobChunks * grain;
  for (int64_t base = 0; base < n; base += per_job) {
    const int64_t len = std::min(per_job, n - base);
    const auto shifted = [&](int64_t b, int64_t e) { fn(base + b, base + e); };
    if (!p->TryRun(len, grain, shifted)) RunInline(len, grain, (len + grain - 1) / grain, shifted);
  }
  in_parallel_for = false;
}

}  // namespace zt::kernels
