#include "zero/local_communicator.h"

#include <utility>

#include "core/status_macros.h"

namespace zt {
namespace {

// Completes when its stream is synchronized.
class StreamWork final : public WorkHandle {
 public:
  explicit StreamWork(Stream* stream) : stream_(stream) {}
  absl::Status Wait(absl::Duration) override {
    if (stream_ == nullptr) return absl::OkStatus();
    absl::Status s = stream_->Synchronize();
    if (s.ok()) stream_ = nullptr;
    return s;
  }
  absl::StatusOr<bool> Poll() override {
    ZT_RETURN_IF_ERROR(Wait(absl::ZeroDuration()));
    return true;
  }

 private:
  Stream* stream_;
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(Device device, std::unique_ptr<Stream> own_stream)
      : Communicator("local", 0, 1, device), own_stream_(std::move(own_stream)) {}

 protected:
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllReduce(const AllReduceOptions& o) override {
    return Copy(o.recv, o.send, o.count, o.dtype, o.stream);
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatter(
      const ReduceScatterOptions& o) override {
    return Copy(o.recv, o.send, o.count, o.dtype, o.stream);
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGather(const AllGatherOptions& o) override {
    return Copy(o.recv, o.send, o.count, o.dtype, o.stream);
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoReduceScatterV(
      const ReduceScatterVOptions& o) override {
    return Copy(o.recv, o.send, o.counts[0], o.dtype, o.stream);
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoAllGatherV(const AllGatherVOptions& o) override {
    return Copy(o.recv, o.send, o.counts[0], o.dtype, o.stream);
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBroadcast(const BroadcastOptions&) override {
    return std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>());
  }
  absl::StatusOr<std::unique_ptr<WorkHandle>> DoBarrier(const BarrierOptions&) override {
    return std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>());
  }

 private:
  absl::StatusOr<std::unique_ptr<WorkHandle>> Copy(void* dst, const void* src, int64_t count,
                                                   DType dtype, Stream* stream) {
    if (dst == src || count == 0 || device().is_cpu()) {
      if (dst != src) {
        ZT_RETURN_IF_ERROR(
            CopyBytes(dst, device(), src, device(), count * DTypeSize(dtype), nullptr));
      }
      return std::unique_ptr<WorkHandle>(std::make_unique<CompletedWork>());
    }
    if (stream == nullptr) stream = own_stream_.get();
    ZT_RETURN_IF_ERROR(CopyBytes(dst, device(), src, device(), count * DTypeSize(dtype), stream));
    return std::unique_ptr<WorkHandle>(std::make_unique<StreamWork>(stream));
  }

  std::unique_ptr<Stream> own_stream_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> CreateLocalCommunicator(Device device) {
  std::unique_ptr<Stream> own_stream;
  if (device.is_cuda()) {
    ZT_ASSIGN_OR_RETURN(own_stream, NewStream(device));
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<LocalCommunicator>(device, std::move(own_stream)));
}

}  // namespace zt
