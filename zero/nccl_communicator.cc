// Compiled by the host compiler against CUDA's and NCCL's headers (no
// kernels here); only in the cuda build.
#include "zero/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "core/library_errors.h"
#include "core/status_macros.h"
#include "zero/launch_env.h"
#include "zero/mpi_communicator.h"
#include "zero/tcp_rendezvous.h"

namespace zt {
namespace {

ncclDataType_t NcclType(DType t) {
  switch (t) {
    case DType::kFloat16:
      return ncclFloat16;
    case DType::kBFloat16:
      return ncclBfloat16;
    default:
      return ncclFloat32;
  }
}

ncclRedOp_t NcclOp(ReduceOp op) { return op == ReduceOp::kAverage ? ncclAvg : ncclSum; }

int64_t Total(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return total;
}

void Backoff(absl::Time start) {
  const absl::Duration waited = absl::Now() - start;
  if (waited < absl::Milliseconds(1)) {
    std::this_thread::yield();
  } else {
    absl::SleepFor(waited < absl::Milliseconds(100) ? absl::Microseconds(20)
                                                    : absl::Microseconds(500));
  }
}

// Everything one NCCL communicator owns; shared with its handles.
class NcclState {
 public:
  NcclState(int device, int rank, int size) : device_(device), rank_(rank), size_(size) {}

  ~NcclState() {
    cudaSetDevice(device_);
    if (comm_ != nullptr && !aborted_.load()) {
      // Outstanding work is flushed by finalize; abort is the fallback.
      ncclResult_t state = ncclCommFinalize(comm_);
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (state == ncclSuccess || state == ncclInProgress) {
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
        if (state != ncclInProgress || absl::Now() > deadline) break;
        std::this_thread::yield();
      }
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    cudaGetLastError();
  }

  absl::Status Init(const ncclUniqueId& id, absl::Time deadline) {
    ZT_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    ZT_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    ZT_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    ZT_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, sizeof(float)));
    ZT_CUDA_RETURN_IF_ERROR(cudaMemset(scratch_, 0, sizeof(float)));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    // Non-blocking, so a missing peer cannot hang us in ncclCommInitRank.
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      ZT_NCCL_RETURN_IF_ERROR(r);
    }
    return Settle(absl::StrCat("NCCL initialization on rank ", rank_, " of ", size_), deadline);
  }

  // Non-blocking communicators may return ncclInProgress from any call;
  // waits until the call has settled.
  absl::Status Settle(const std::string& what, absl::Time deadline) {
    const absl::Time start = absl::Now();
    while (true) {
      ncclResult_t state = ncclSuccess;
      ZT_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm_, &state));
      if (state == ncclSuccess) return absl::OkStatus();
      if (state != ncclInProgress) return Failed(what, state);
      if (absl::Now() >= deadline) {
        Abort();
        return absl::DeadlineExceededError(
            absl::StrCat(what,
                         " did not complete in time: a peer rank did not join; the NCCL "
                         "communicator was aborted"));
      }
      Backoff(start);
    }
  }

  // Checks for an asynchronous NCCL failure (e.g. a peer's connection lost).
  absl::Status AsyncError(const std::string& what) {
    ncclResult_t state = ncclSuccess;
    ZT_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm_, &state));
    if (state == ncclSuccess || state == ncclInProgress) return absl::OkStatus();
    return Failed(what, state);
  }

  absl::Status Failed(const std::string& what, ncclResult_t state) {
    const std::string detail = ncclGetLastError(comm_);
    Abort();
    return absl::UnavailableError(absl::StrCat(
        what, " failed: NCCL error ", static_cast<int>(state), " (", ncclGetErrorString(state),
        ") ", detail, "; the NCCL communicator was aborted"));
  }

  void Abort() {
    absl::MutexLock lock(&mu_);
    if (aborted_.exchange(true)) return;
    cudaSetDevice(device_);
    ncclCommAbort(comm_);
  }

  absl::Status CheckUsable(const std::string& what) const {
    if (aborted_.load()) {
      return absl::UnavailableError(
          absl::StrCat(what, ": the NCCL communicator was aborted after an earlier failure"));
    }
    return absl::OkStatus();
  }

  int device() const { return device_; }
  ncclComm_t comm() const { return comm_; }
  cudaStream_t stream() const { return stream_; }
  cudaEvent_t ready_event() const { return ready_; }
  float* scratch() const { return scratch_; }

 private:
  const int device_, rank_, size_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  float* scratch_ = nullptr;
  absl::Mutex mu_;
  std::atomic<bool> aborted_{false};
};

class NcclWork final : public WorkHandle {
 public:
  NcclWork(std::shared_ptr<NcclState> state, cudaEvent_t done, std::string description)
      : state_(std::move(state)), done_(done), description_(std::move(description)) {}
  ~NcclWork() override { cudaEventDestroy(done_); }

  absl::StatusOr<bool> Poll() override {
    if (complete_) return true;
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaSuccess) {
      complete_ = true;
      return true;
    }
    if (e != cudaErrorNotReady) {
      return Annotate(CudaErrorToStatus(e, "cudaEventQuery", __FILE__, __LINE__), description_);
    }
    ZT_RETURN_IF_ERROR(state_->CheckUsable(description_));
    ZT_RETURN_IF_ERROR(state_->AsyncError(description_));
    return false;
  }

  absl::Status Wait(absl::Duration timeout) override {
    const absl::Time start = absl::Now();
    while (true) {
      ZT_ASSIGN_OR_RETURN(bool complete, Poll());
      if (complete) return absl::OkStatus();
      if (absl::Now() - start >= timeout) {
        // Kernels waiting on a dead peer never finish on their own.
        state_->Abort();
        return CollectiveTimeoutError(description_, timeout,
                                      "the NCCL communicator was aborted and cannot be used again");
      }
      Backoff(start);
    }
  }

  absl::Status OrderBefore(Stream* stream, absl::Duration timeout) override {
    if (stream == nullptr) return Wait(timeout);
    ZT_CUDA_RETURN_IF_ERROR(
        cudaStreamWaitEvent(static_cast<cudaStream_t>(stream->native_handle()), done_, 0));
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<NcclState> state_;
  cudaEvent_t done_;
  const std::string description_;
  bool complete_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<NcclState> state, int rank, int size, absl::Duration timeout)
      : Communicator("nccl", rank, size, Device::Cuda(state->device())),
        state_(std::move(state)),
        call_timeout_(timeout) {}

 protected:
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllReduce(const AllReduceOptions& o) override {
    const std::string what = Describe(Collective::kAllReduce, o.count, o.dtype);
    return Launch(what, o.stream, [&] {
      return ncclAllReduce(o.send, o.recv, o.count, NcclType(o.dtype), NcclOp(o.op), state_->comm(),
                           state_->stream());
    });
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatter(
      const ReduceScatterOptions& o) override {
    const std::string what = Describe(Collective::kReduceScatter, o.count, o.dtype);
    return Launch(what, o.stream, [&] {
      return ncclReduceScatter(o.send, o.recv, o.count, NcclType(o.dtype), NcclOp(o.op),
                               state_->comm(), state_->stream());
    });
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGather(const AllGatherOptions& o) override {
    const std::string what = Describe(Collective::kAllGather, o.count, o.dtype);
    return Launch(what, o.stream, [&] {
      return ncclAllGather(o.send, o.recv, o.count, NcclType(o.dtype), state_->comm(),
                           state_->stream());
    });
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBroadcast(const BroadcastOptions& o) override {
    const std::string what = Describe(Collective::kBroadcast, o.count, o.dtype);
    return Launch(what, o.stream, [&] {
      return ncclBroadcast(o.buffer, o.buffer, o.count, NcclType(o.dtype), o.root, state_->comm(),
                           state_->stream());
    });
  }
  // NCCL has no variable-count reduce-scatter: one grouped ncclReduce per
  // non-empty piece, rooted at the rank that owns it. The result lives on
  // the root only.
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions& o) override {
    const std::string what = DescribeV(Collective::kReduceScatter, Total(o.counts), o.dtype);
    const size_t size = DTypeSize(o.dtype);
    return Launch(what, o.stream, [&] {
      return Grouped([&](auto&& enqueue) {
        size_t offset = 0;
        for (int r = 0; r < world_size(); ++r) {
          const size_t count = static_cast<size_t>(o.counts[r]);
          if (count > 0) {
            // recvbuff is used on the root only.
            enqueue(ncclReduce(static_cast<const char*>(o.send) + offset * size,
                               r == rank() ? o.recv : nullptr, count, NcclType(o.dtype),
                               NcclOp(o.op), r, state_->comm(), state_->stream()));
          }
          offset += count;
        }
      });
    });
  }
  // One grouped ncclBroadcast per non-empty piece, from the rank that owns it
  // straight into everyone's place for it (in place on the owner when send
  // is its own piece of recv).
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(const AllGatherVOptions& o) override {
    const std::string what = DescribeV(Collective::kAllGather, Total(o.counts), o.dtype);
    const size_t size = DTypeSize(o.dtype);
    return Launch(what, o.stream, [&] {
      return Grouped([&](auto&& enqueue) {
        size_t offset = 0;
        for (int r = 0; r < world_size(); ++r) {
          const size_t count = static_cast<size_t>(o.counts[r]);
          if (count > 0) {
            void* piece = static_cast<char*>(o.recv) + offset * size;
            // sendbuff is used on the root only.
            enqueue(ncclBroadcast(r == rank() ? o.send : piece, piece, count, NcclType(o.dtype), r,
                                  state_->comm(), state_->stream()));
          }
          offset += count;
        }
      });
    });
  }
  // NCCL has no barrier: an all-reduce of one float completes only once
  // every rank has issued it.
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBarrier(const BarrierOptions& o) override {
    const std::string what = Describe(Collective::kBarrier, 0, DType::kFloat32);
    return Launch(what, o.stream, [&] {
      return ncclAllReduce(state_->scratch(), state_->scratch(), 1, ncclFloat32, ncclSum,
                           state_->comm(), state_->stream());
    });
  }

 private:
  // Runs `body(enqueue)` between ncclGroupStart and ncclGroupEnd, where
  // `enqueue` records the first failure of the calls it is given; the group
  // is always ended.
  template <typename F>
  static ncclResult_t Grouped(F&& body) {
    ncclResult_t first = ncclGroupStart();
    if (first != ncclSuccess) return first;
    body([&](ncclResult_t r) {
      if (first == ncclSuccess && r != ncclSuccess && r != ncclInProgress) first = r;
    });
    const ncclResult_t end = ncclGroupEnd();
    return first != ncclSuccess ? first : end;
  }

  template <typename F>
  absl::StatusOr<std::unique_ptr<WorkHandle>> Launch(const std::string& what, Stream* stream,
                                                     F&& call) {
    ZT_RETURN_IF_ERROR(state_->CheckUsable(what));
    ZT_CUDA_RETURN_IF_ERROR(cudaSetDevice(state_->device()));
    if (stream != nullptr) {
      // The collective reads what the caller's stream produced.
      ZT_CUDA_RETURN_IF_ERROR(cudaEventRecord(state_->ready_event(),
                                              static_cast<cudaStream_t>(stream->native_handle())));
      ZT_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(state_->stream(), state_->ready_event(), 0));
    }
    const ncclResult_t r = call();
    if (r != ncclSuccess && r != ncclInProgress) {
      return Annotate(NcclErrorToStatus(r, "enqueueing the NCCL collective", __FILE__, __LINE__),
                      what);
    }
    ZT_RETURN_IF_ERROR(state_->Settle(what, absl::Now() + call_timeout_));
    cudaEvent_t done = nullptr;
    ZT_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    if (cudaError_t e = cudaEventRecord(done, state_->stream()); e != cudaSuccess) {
      cudaEventDestroy(done);
      ZT_CUDA_RETURN_IF_ERROR(e);
    }
    return std::unique_ptr<WorkHandle>(std::make_unique<NcclWork>(state_, done, what));
  }

  std::shared_ptr<NcclState> state_;
  // Bounds enqueueing (not completion) of a collective.
  const absl::Duration call_timeout_;
};

// Rank 0's unique id, delivered to every rank.
absl::StatusOr<ncclUniqueId> ShareUniqueId(const LaunchEnv& env, int rank, int size,
                                           Communicator* mpi, absl::Time deadline) {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank == 0) ZT_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  if (size == 1) return id;
  if (mpi != nullptr) {
    // Broadcast moves bits only; the id travels as 64 16-bit elements.
    BroadcastOptions b;
    b.buffer = &id;
    b.count = sizeof(id) / 2;
    b.dtype = DType::kFloat16;
    b.root = 0;
    ZT_RETURN_IF_ERROR(
        Await(mpi->Broadcast(b), std::max(deadline - absl::Now(), absl::ZeroDuration())));
    return id;
  }
  TcpRendezvousOptions t;
  t.master_addr = env.master_addr;
  t.master_port = env.master_port;
  t.rank = rank;
  t.world_size = size;
  t.timeout = std::max(deadline - absl::Now(), absl::ZeroDuration());
  ZT_ASSIGN_OR_RETURN(
      std::string bytes,
      TcpBroadcastFromRank0(t, absl::string_view(reinterpret_cast<const char*>(&id), sizeof(id))));
  if (bytes.size() != sizeof(id)) {
    return absl::DataLossError(absl::StrCat("NCCL unique id from rank 0 has ", bytes.size(),
                                            " bytes, expected ", sizeof(id)));
  }
  std::memcpy(&id, bytes.data(), sizeof(id));
  return id;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(
    const NcclCommunicatorOptions& options) {
  const int devices = CudaDeviceCount();
  if (options.device_index < 0 || options.device_index >= devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("NCCL communicator on cuda:", options.device_index, " but ", devices,
                     " CUDA device(s) are visible"));
  }
  const absl::Time deadline = absl::Now() + options.init_timeout;
  ZT_ASSIGN_OR_RETURN(LaunchEnv env, DetectLaunchEnv());
  int rank = env.rank, size = env.world_size;
  std::unique_ptr<Communicator> mpi;
  if (env.launcher == Launcher::kMpi) {
    ZT_ASSIGN_OR_RETURN(mpi, CreateMpiCommunicator());
    rank = mpi->rank();
    size = mpi->world_size();
  }
  ZT_ASSIGN_OR_RETURN(ncclUniqueId id, ShareUniqueId(env, rank, size, mpi.get(), deadline));
  auto state = std::make_shared<NcclState>(options.device_index, rank, size);
  ZT_RETURN_IF_ERROR(state->Init(id, deadline));
  return std::unique_ptr<Communicator>(
      std::make_unique<NcclCommunicator>(std::move(state), rank, size, options.init_timeout));
}

}  // namespace zt
