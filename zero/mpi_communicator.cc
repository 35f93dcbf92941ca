#include "zero/mpi_communicator.h"

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "core/dtype.h"
#include "core/library_errors.h"
#include "core/status_macros.h"

namespace zt {
namespace {

// Sums 16-bit floats pairwise: float add, then one RNE rounding (see the
// header for why this is the correctly rounded 16-bit sum).
template <typename T>
void Sum16(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T::FromFloat(a[i].ToFloat() + b[i].ToFloat());
}

// The communicator checked sum(counts) <= INT_MAX, so every entry and every
// displacement fits in int.
std::vector<int> IntCounts(const std::vector<int64_t>& counts) {
  return std::vector<int>(counts.begin(), counts.end());
}

// displs[r] = sum(counts[0..r)).
std::vector<int> Displacements(const std::vector<int64_t>& counts) {
  std::vector<int> displs(counts.size());
  int64_t offset = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    displs[r] = static_cast<int>(offset);
    offset += counts[r];
  }
  return displs;
}

int64_t Total(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return total;
}

bool MpiFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// MPI itself, once per process: initialization, the 16-bit sum operations,
// and finalization when the last communicator (and the static reference)
// are gone.
class MpiEnvironment {
 public:
  static absl::StatusOr<std::shared_ptr<MpiEnvironment>> Get() {
    static absl::Mutex mu(absl::kConstInit);
    static std::shared_ptr<MpiEnvironment>* held = nullptr;
    // Destroyed at exit: drops the static reference so the environment
    // finalizes MPI once every communicator is gone too.
    static struct Releaser {
      ~Releaser() {
        absl::MutexLock lock(&mu);
        delete held;
        held = nullptr;
      }
    } releaser;
    absl::MutexLock lock(&mu);
    if (held != nullptr) return *held;
    auto env = std::shared_ptr<MpiEnvironment>(new MpiEnvironment());
    ZT_RETURN_IF_ERROR(env->Init());
    held = new std::shared_ptr<MpiEnvironment>(env);
    return env;
  }

  ~MpiEnvironment() {
    if (MpiFinalized()) return;
    if (fp16_sum_ != MPI_OP_NULL) MPI_Op_free(&fp16_sum_);
    if (bf16_sum_ != MPI_OP_NULL) MPI_Op_free(&bf16_sum_);
    if (!owns_init_) return;
    if (abandoned_.load() > 0) {
      // MPI_Finalize would wait for a peer that never joined a collective.
      // Exiting without it makes the launcher end the whole job.
      LOG(ERROR) << abandoned_.load()
                 << " MPI collective(s) never completed; exiting without MPI_Finalize";
      return;
    }
    MPI_Finalize();
  }

  MPI_Op SumOp(DType t) const {
    switch (t) {
      case DType::kFloat16:
        return fp16_sum_;
      case DType::kBFloat16:
        return bf16_sum_;
      default:
        return MPI_SUM;
    }
  }
  static MPI_Datatype Type(DType t) { return t == DType::kFloat32 ? MPI_FLOAT : MPI_UINT16_T; }

  // Serializes our MPI calls (MPI_THREAD_SERIALIZED).
  absl::Mutex& mu() { return call_mu_; }
  // Collectives whose Wait timed out and that have not completed since.
  std::atomic<int>& abandoned() { return abandoned_; }

 private:
  MpiEnvironment() = default;

  absl::Status Init() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (MpiFinalized()) {
      return absl::FailedPreconditionError("MPI was already finalized in this process");
    }
    if (!initialized) {
      int provided = 0;
      ZT_MPI_RETURN_IF_ERROR(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
      if (provided < MPI_THREAD_SERIALIZED) {
        LOG(WARNING) << "MPI provides thread level " << provided
                     << "; call collectives from the main thread only";
      }
      owns_init_ = true;
    }
    // Non-commutative: MPI must combine operands in rank order.
    ZT_MPI_RETURN_IF_ERROR(MPI_Op_create(&Sum16<Half>, /*commute=*/0, &fp16_sum_));
    ZT_MPI_RETURN_IF_ERROR(MPI_Op_create(&Sum16<BFloat16>, /*commute=*/0, &bf16_sum_));
    return absl::OkStatus();
  }

  bool owns_init_ = false;
  MPI_Op fp16_sum_ = MPI_OP_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;
  absl::Mutex call_mu_;
  std::atomic<int> abandoned_{0};
};

// What handles share with their communicator, so a handle that outlives it
// still has a valid MPI communicator and staging allocator.
struct CommState {
  std::shared_ptr<MpiEnvironment> env;
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<Allocator> own_staging;
  Allocator* staging = nullptr;

  ~CommState() {
    // With a collective abandoned on a dead peer, the process is on its way
    // out; freeing the communicator could wait on that peer.
    if (comm != MPI_COMM_NULL && !MpiFinalized() && env->abandoned().load() == 0) {
      MPI_Comm_free(&comm);
    }
  }
};

absl::Status SyncStream(Stream* stream) {
  return stream == nullptr ? absl::OkStatus() : stream->Synchronize();
}

// Divides `count` elements by `n` in place (host memory).
void DivideInPlace(void* data, int64_t count, DType dtype, int n) {
  const float d = static_cast<float>(n);
  switch (dtype) {
    case DType::kFloat32: {
      float* p = static_cast<float*>(data);
      for (int64_t i = 0; i < count; ++i) p[i] /= d;
      break;
    }
    case DType::kFloat16: {
      Half* p = static_cast<Half*>(data);
      for (int64_t i = 0; i < count; ++i) p[i] = Half::FromFloat(p[i].ToFloat() / d);
      break;
    }
    case DType::kBFloat16: {
      BFloat16* p = static_cast<BFloat16*>(data);
      for (int64_t i = 0; i < count; ++i) p[i] = BFloat16::FromFloat(p[i].ToFloat() / d);
      break;
    }
  }
}

class MpiWork final : public WorkHandle {
 public:
  MpiWork(std::shared_ptr<CommState> state, std::string description)
      : state_(std::move(state)), description_(std::move(description)) {}

  ~MpiWork() override {
    if (done_) return;
    if (!timed_out_ && state_->env->abandoned().load() == 0) {
      const absl::Status s = Wait(kDefaultCollectiveTimeout);
      if (!s.ok()) LOG(ERROR) << "collective dropped unfinished: " << s;
    }
    if (!done_) {
      // MPI may still write the staging memory: never free it.
      for (Buffer& b : staging_) new Buffer(std::move(b));
      new std::deque<std::vector<int>>(std::move(arrays_));
      LOG(ERROR) << description_ << " was abandoned while pending";
    }
  }

  MPI_Request* request() { return &request_; }
  // Staging memory that must live as long as the request.
  Buffer* AddStaging(Buffer b) {
    staging_.push_back(std::move(b));
    return &staging_.back();
  }
  // Count and displacement arrays, which MPI may read until the request
  // completes.
  const int* AddArray(std::vector<int> a) {
    arrays_.push_back(std::move(a));
    return arrays_.back().data();
  }
  // Runs after MPI completes (averaging, the copy back to the device).
  void OnComplete(std::function<absl::Status()> f) { on_complete_ = std::move(f); }

  absl::StatusOr<bool> Poll() override {
    if (done_) {
      if (!status_.ok()) return status_;
      return true;
    }
    int complete = 0;
    int rc;
    {
      absl::MutexLock lock(&state_->env->mu());
      rc = MPI_Test(&request_, &complete, MPI_STATUS_IGNORE);
    }
    if (rc != MPI_SUCCESS) {
      Finish(Annotate(MpiErrorToStatus(rc, "MPI_Test", __FILE__, __LINE__), description_));
      return status_;
    }
    if (!complete) return false;
    absl::Status s = on_complete_ ? on_complete_() : absl::OkStatus();
    Finish(Annotate(s, description_));
    if (!status_.ok()) return status_;
    return true;
  }

  absl::Status Wait(absl::Duration timeout) override {
    const absl::Time start = absl::Now();
    const absl::Time deadline = start + timeout;
    while (true) {
      ZT_ASSIGN_OR_RETURN(bool complete, Poll());
      if (complete) return absl::OkStatus();
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        if (!timed_out_) {
          timed_out_ = true;
          state_->env->abandoned().fetch_add(1);
        }
        return CollectiveTimeoutError(description_, timeout);
      }
      // Spin briefly for latency, then back off so oversubscribed ranks
      // (several per core) leave the CPU to the peers they wait for.
      if (now - start < absl::Milliseconds(1)) {
        std::this_thread::yield();
      } else {
        absl::SleepFor(now - start < absl::Milliseconds(100) ? absl::Microseconds(50)
                                                             : absl::Milliseconds(1));
      }
    }
  }

  void Finish(absl::Status s) {
    done_ = true;
    status_ = std::move(s);
    if (timed_out_) state_->env->abandoned().fetch_sub(1);
    staging_.clear();
    arrays_.clear();
  }

 private:
  std::shared_ptr<CommState> state_;
  const std::string description_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::deque<Buffer> staging_;  // A deque keeps earlier pointers valid.
  std::deque<std::vector<int>> arrays_;
  std::function<absl::Status()> on_complete_;
  bool done_ = false;
  bool timed_out_ = false;
  absl::Status status_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(std::shared_ptr<CommState> state, int rank, int size, Device device, bool staged)
      : Communicator(staged ? "mpi-staged" : "mpi", rank, size, device),
        state_(std::move(state)),
        staged_(staged) {}

 protected:
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllReduce(const AllReduceOptions& o) override {
    const std::string what = Describe(Collective::kAllReduce, o.count, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t bytes = o.count * DTypeSize(o.dtype);
    void* result = o.recv;
    const void* send = o.send == o.recv ? MPI_IN_PLACE : o.send;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * stage, Stage(work.get(), bytes));
      ZT_RETURN_IF_ERROR(ToHost(stage->data(), o.send, bytes, o.stream));
      result = stage->data();
      send = MPI_IN_PLACE;
    }
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Iallreduce(send, result, static_cast<int>(o.count),
                                MpiEnvironment::Type(o.dtype), state_->env->SumOp(o.dtype),
                                state_->comm, r);
        },
        work.get()));
    work->OnComplete(Finisher(result, o.recv, o.count, o.dtype, o.op, o.stream));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatter(
      const ReduceScatterOptions& o) override {
    const std::string what = Describe(Collective::kReduceScatter, o.count, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t bytes = o.count * DTypeSize(o.dtype);
    const void* send = o.send;
    void* result = o.recv;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * in, Stage(work.get(), bytes * world_size()));
      ZT_ASSIGN_OR_RETURN(Buffer * out, Stage(work.get(), bytes));
      ZT_RETURN_IF_ERROR(ToHost(in->data(), o.send, bytes * world_size(), o.stream));
      send = in->data();
      result = out->data();
    }
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Ireduce_scatter_block(send, result, static_cast<int>(o.count),
                                           MpiEnvironment::Type(o.dtype),
                                           state_->env->SumOp(o.dtype), state_->comm, r);
        },
        work.get()));
    work->OnComplete(Finisher(result, o.recv, o.count, o.dtype, o.op, o.stream));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGather(const AllGatherOptions& o) override {
    const std::string what = Describe(Collective::kAllGather, o.count, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t bytes = o.count * DTypeSize(o.dtype);
    const void* own_slot = static_cast<const char*>(o.recv) + rank() * bytes;
    const void* send = o.send == own_slot ? MPI_IN_PLACE : o.send;
    void* result = o.recv;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * out, Stage(work.get(), bytes * world_size()));
      ZT_RETURN_IF_ERROR(
          ToHost(static_cast<char*>(out->data()) + rank() * bytes, o.send, bytes, o.stream));
      send = MPI_IN_PLACE;
      result = out->data();
    }
    const MpiType type = MpiEnvironment::Type(o.dtype);
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Iallgather(send, static_cast<int>(o.count), type, result,
                                static_cast<int>(o.count), type, state_->comm, r);
        },
        work.get()));
    work->OnComplete(
        Finisher(result, o.recv, o.count * world_size(), o.dtype, ReduceOp::kSum, o.stream));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  // MPI_Ireduce_scatter takes the same rank-ordered 16-bit sum as the other
  // reductions, so each element's association is fixed by MPI's algorithm
  // for this world size and these counts (the same on every run); each
  // element of the result lives on one rank only.
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions& o) override {
    const int64_t total = Total(o.counts);
    const std::string what = DescribeV(Collective::kReduceScatter, total, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t size = DTypeSize(o.dtype);
    const int64_t mine = o.counts[rank()];
    const int* counts = work->AddArray(IntCounts(o.counts));
    const void* send = o.send;
    void* result = o.recv;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * in, Stage(work.get(), total * size));
      ZT_ASSIGN_OR_RETURN(Buffer * out, Stage(work.get(), mine * size));
      ZT_RETURN_IF_ERROR(ToHost(in->data(), o.send, total * size, o.stream));
      send = in->data();
      result = out->data();
    }
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Ireduce_scatter(send, result, counts, MpiEnvironment::Type(o.dtype),
                                     state_->env->SumOp(o.dtype), state_->comm, r);
        },
        work.get()));
    work->OnComplete(Finisher(result, o.recv, mine, o.dtype, o.op, o.stream));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(const AllGatherVOptions& o) override {
    const int64_t total = Total(o.counts);
    const std::string what = DescribeV(Collective::kAllGather, total, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t size = DTypeSize(o.dtype);
    const int* counts = work->AddArray(IntCounts(o.counts));
    const int* displs = work->AddArray(Displacements(o.counts));
    const size_t own_offset = static_cast<size_t>(displs[rank()]) * size;
    const void* own_piece = static_cast<const char*>(o.recv) + own_offset;
    const void* send = o.send == own_piece ? MPI_IN_PLACE : o.send;
    void* result = o.recv;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * out, Stage(work.get(), total * size));
      ZT_RETURN_IF_ERROR(ToHost(static_cast<char*>(out->data()) + own_offset, o.send,
                                counts[rank()] * size, o.stream));
      send = MPI_IN_PLACE;
      result = out->data();
    }
    const MpiType type = MpiEnvironment::Type(o.dtype);
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Iallgatherv(send, counts[rank()], type, result, counts, displs, type,
                                 state_->comm, r);
        },
        work.get()));
    work->OnComplete(Finisher(result, o.recv, total, o.dtype, ReduceOp::kSum, o.stream));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBroadcast(const BroadcastOptions& o) override {
    const std::string what = Describe(Collective::kBroadcast, o.count, o.dtype);
    ZT_RETURN_IF_ERROR(CheckStream(what, o.stream));
    auto work = std::make_unique<MpiWork>(state_, what);
    const size_t bytes = o.count * DTypeSize(o.dtype);
    void* buffer = o.buffer;
    if (staged_) {
      ZT_ASSIGN_OR_RETURN(Buffer * stage, Stage(work.get(), bytes));
      if (rank() == o.root) ZT_RETURN_IF_ERROR(ToHost(stage->data(), o.buffer, bytes, o.stream));
      buffer = stage->data();
    }
    ZT_RETURN_IF_ERROR(Start(
        what,
        [&](MPI_Request* r) {
          return MPI_Ibcast(buffer, static_cast<int>(o.count), MpiEnvironment::Type(o.dtype),
                            o.root, state_->comm, r);
        },
        work.get()));
    // The root's device buffer already holds the data.
    if (rank() != o.root) {
      work->OnComplete(Finisher(buffer, o.buffer, o.count, o.dtype, ReduceOp::kSum, o.stream));
    }
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBarrier(const BarrierOptions&) override {
    const std::string what = Describe(Collective::kBarrier, 0, DType::kFloat32);
    auto work = std::make_unique<MpiWork>(state_, what);
    ZT_RETURN_IF_ERROR(Start(
        what, [&](MPI_Request* r) { return MPI_Ibarrier(state_->comm, r); }, work.get()));
    return std::unique_ptr<WorkHandle>(std::move(work));
  }

 private:
  using MpiType = MPI_Datatype;

  absl::Status CheckStream(const std::string& what, Stream* stream) const {
    if (staged_ && device().is_cuda() && stream == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": host-staged MPI on ", device().ToString(),
                       " needs options.stream (the stream that produced the buffers)"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Buffer*> Stage(MpiWork* work, size_t bytes) {
    ZT_ASSIGN_OR_RETURN(Buffer b,
                        Buffer::Allocate(*state_->staging, bytes, MemoryCategory::kCommBuffers));
    return work->AddStaging(std::move(b));
  }

  // Copies device data to host staging and waits for it: MPI reads it next.
  absl::Status ToHost(void* host, const void* src, size_t bytes, Stream* stream) {
    ZT_RETURN_IF_ERROR(CopyBytes(host, Device::Cpu(), src, device(), bytes, stream));
    return device().is_cuda() ? SyncStream(stream) : absl::OkStatus();
  }

  absl::Status Start(const std::string& what, const std::function<int(MPI_Request*)>& start,
                     MpiWork* work) {
    int rc;
    {
      absl::MutexLock lock(&state_->env->mu());
      rc = start(work->request());
    }
    if (rc != MPI_SUCCESS) {
      work->Finish(absl::OkStatus());  // Nothing pending: nothing to wait for.
      return Annotate(MpiErrorToStatus(rc, "starting the MPI collective", __FILE__, __LINE__),
                      what);
    }
    return absl::OkStatus();
  }

  // After MPI completes: average on the host result, then (staged) copy it to
  // the device buffer and wait for that copy.
  std::function<absl::Status()> Finisher(void* host_result, void* dst, int64_t count, DType dtype,
                                         ReduceOp op, Stream* stream) {
    const int n = world_size();
    const bool copy_back = staged_ && host_result != dst;
    const Device device = this->device();
    return [=]() -> absl::Status {
      if (op == ReduceOp::kAverage) DivideInPlace(host_result, count, dtype, n);
      if (!copy_back) return absl::OkStatus();
      ZT_RETURN_IF_ERROR(
          CopyBytes(dst, device, host_result, Device::Cpu(), count * DTypeSize(dtype), stream));
      // The staging memory is freed right after this returns.
      return device.is_cuda() ? SyncStream(stream) : absl::OkStatus();
    };
  }

  std::shared_ptr<CommState> state_;
  const bool staged_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateMpiCommunicator(
    const MpiCommunicatorOptions& options) {
  ZT_ASSIGN_OR_RETURN(std::shared_ptr<MpiEnvironment> env, MpiEnvironment::Get());
  auto state = std::make_shared<CommState>();
  state->env = env;
  {
    absl::MutexLock lock(&env->mu());
    ZT_MPI_RETURN_IF_ERROR(MPI_Comm_dup(MPI_COMM_WORLD, &state->comm));
    ZT_MPI_RETURN_IF_ERROR(MPI_Comm_set_errhandler(state->comm, MPI_ERRORS_RETURN));
  }
  int rank = 0, size = 1;
  ZT_MPI_RETURN_IF_ERROR(MPI_Comm_rank(state->comm, &rank));
  ZT_MPI_RETURN_IF_ERROR(MPI_Comm_size(state->comm, &size));
  const bool staged = options.host_staged || options.device.is_cuda();
  if (options.staging_allocator != nullptr) {
    if (!options.staging_allocator->device().is_cpu()) {
      return absl::InvalidArgumentError(
          absl::StrCat("MPI staging allocator must allocate host memory, not ",
                       options.staging_allocator->device().ToString()));
    }
    state->staging = options.staging_allocator;
  } else {
    state->own_staging = NewCpuAllocator();
    state->staging = state->own_staging.get();
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<MpiCommunicator>(std::move(state), rank, size, options.device, staged));
}

}  // namespace zt
