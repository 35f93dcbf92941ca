#include "zero/tcp_rendezvous.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace zt {
namespace {

// "ZTRV": guards against a stray client (or a port reused by something else).
constexpr uint32_t kMagic = 0x5a545256;
// Unique ids are 128 bytes; anything near this is a corrupted stream.
constexpr uint32_t kMaxPayload = 1 << 20;

class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(ScopedFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ScopedFd& operator=(ScopedFd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string Errno(int e) { return std::strerror(e); }

int MillisUntil(absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
}

absl::Status SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::UnavailableError(absl::StrCat("fcntl(O_NONBLOCK): ", Errno(errno)));
  }
  return absl::OkStatus();
}

// Waits until `fd` is ready for `events` or the deadline passes (false).
absl::StatusOr<bool> WaitFd(int fd, short events, absl::Time deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, MillisUntil(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return absl::UnavailableError(absl::StrCat("poll: ", Errno(errno)));
  }
}

absl::Status WriteAll(int fd, const void* data, size_t size, absl::Time deadline,
                      absl::string_view peer) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ZT_ASSIGN_OR_RETURN(bool ready, WaitFd(fd, POLLOUT, deadline));
      if (!ready)
        return absl::DeadlineExceededError(absl::StrCat("sending to ", peer, " timed out"));
      continue;
    }
    return absl::UnavailableError(absl::StrCat("sending to ", peer, ": ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, void* data, size_t size, absl::Time deadline, absl::string_view peer) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = recv(fd, p, size, 0);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      return absl::UnavailableError(absl::StrCat(peer, " closed the connection early"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      ZT_ASSIGN_OR_RETURN(bool ready, WaitFd(fd, POLLIN, deadline));
      if (!ready) {
        return absl::DeadlineExceededError(absl::StrCat("receiving from ", peer, " timed out"));
      }
      continue;
    }
    return absl::UnavailableError(absl::StrCat("receiving from ", peer, ": ", Errno(errno)));
  }
  return absl::OkStatus();
}

// Listens on all interfaces, IPv6 and IPv4 when the system allows.
absl::StatusOr<ScopedFd> Listen(int port, int backlog) {
  ScopedFd fd(socket(AF_INET6, SOCK_STREAM, 0));
  bool v6 = fd.get() >= 0;
  if (!v6) fd = ScopedFd(socket(AF_INET, SOCK_STREAM, 0));
  if (fd.get() < 0) return absl::UnavailableError(absl::StrCat("socket: ", Errno(errno)));
  const int one = 1, zero = 0;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc;
  if (v6) {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(static_cast<uint16_t>(port));
    rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  }
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("rank 0 cannot listen on port ", port, " (MASTER_PORT): ", Errno(errno)));
  }
  if (listen(fd.get(), backlog) != 0) {
    return absl::UnavailableError(absl::StrCat("listen on port ", port, ": ", Errno(errno)));
  }
  ZT_RETURN_IF_ERROR(SetNonBlocking(fd.get()));
  return fd;
}

absl::StatusOr<std::string> ServeRank0(const TcpRendezvousOptions& o, absl::string_view payload,
                                       absl::Time deadline) {
  ZT_ASSIGN_OR_RETURN(ScopedFd listener, Listen(o.master_port, o.world_size));
  std::vector<bool> joined(o.world_size, false);
  joined[0] = true;
  int remaining = o.world_size - 1;
  const uint32_t header[2] = {htonl(kMagic), htonl(static_cast<uint32_t>(payload.size()))};
  while (remaining > 0) {
    ZT_ASSIGN_OR_RETURN(bool ready, WaitFd(listener.get(), POLLIN, deadline));
    if (!ready) {
      std::vector<int> missing;
      for (int r = 0; r < o.world_size; ++r) {
        if (!joined[r]) missing.push_back(r);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "TCP rendezvous on port ", o.master_port, ": rank 0 heard from ",
          o.world_size - 1 - remaining, " of ", o.world_size - 1, " peers within ",
          absl::FormatDuration(o.timeout), "; missing ranks: ", absl::StrJoin(missing, ", ")));
    }
    ScopedFd conn(accept(listener.get(), nullptr, nullptr));
    if (conn.get() < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      return absl::UnavailableError(absl::StrCat("accept: ", Errno(errno)));
    }
    ZT_RETURN_IF_ERROR(SetNonBlocking(conn.get()));
    uint32_t hello[2];
    ZT_RETURN_IF_ERROR(ReadAll(conn.get(), hello, sizeof(hello), deadline, "a connecting peer"));
    const int peer = static_cast<int>(ntohl(hello[1]));
    if (ntohl(hello[0]) != kMagic) {
      // Not one of ours (a port scanner, a stale process): ignore it.
      continue;
    }
    if (peer <= 0 || peer >= o.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("TCP rendezvous: a peer claims rank ", peer,
                                                     " but WORLD_SIZE is ", o.world_size));
    }
    if (joined[peer]) {
      return absl::InvalidArgumentError(
          absl::StrCat("TCP rendezvous: two processes claim rank ", peer));
    }
    const std::string name = absl::StrCat("rank ", peer);
    ZT_RETURN_IF_ERROR(WriteAll(conn.get(), header, sizeof(header), deadline, name));
    ZT_RETURN_IF_ERROR(WriteAll(conn.get(), payload.data(), payload.size(), deadline, name));
    joined[peer] = true;
    --remaining;
  }
  return std::string(payload);
}

// One connection attempt to any address of addr:port, bounded by `deadline`.
absl::StatusOr<ScopedFd> TryConnect(const TcpRendezvousOptions& o, absl::Time deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = absl::StrCat(o.master_port);
  const int gai = getaddrinfo(o.master_addr.c_str(), port.c_str(), &hints, &list);
  if (gai != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve MASTER_ADDR ", o.master_addr, ": ", gai_strerror(gai)));
  }
  std::string last_error = "no address";
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    ScopedFd fd(socket(a->ai_family, a->ai_socktype, a->ai_protocol));
    if (fd.get() < 0) {
      last_error = Errno(errno);
      continue;
    }
    if (absl::Status s = SetNonBlocking(fd.get()); !s.ok()) {
      freeaddrinfo(list);
      return s;
    }
    int rc = connect(fd.get(), a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      auto ready = WaitFd(fd.get(), POLLOUT, std::min(deadline, absl::Now() + absl::Seconds(1)));
      int err = ETIMEDOUT;
      socklen_t len = sizeof(err);
      if (ready.ok() && *ready) getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      freeaddrinfo(list);
      return fd;
    }
    last_error = Errno(errno);
  }
  freeaddrinfo(list);
  return absl::UnavailableError(last_error);
}

absl::StatusOr<std::string> JoinRank0(const TcpRendezvousOptions& o, absl::Time deadline) {
  const std::string where = absl::StrCat(o.master_addr, ":", o.master_port);
  ScopedFd fd;
  std::string last_error;
  while (true) {
    auto conn = TryConnect(o, deadline);
    if (conn.ok()) {
      fd = std::move(*conn);
      break;
    }
    last_error = std::string(conn.status().message());
    if (absl::Now() + absl::Milliseconds(50) >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "TCP rendezvous: rank ", o.rank, " could not reach rank 0 at ", where, " within ",
          absl::FormatDuration(o.timeout), " (last error: ", last_error, ")"));
    }
    // Rank 0 may simply not be listening yet.
    absl::SleepFor(absl::Milliseconds(50));
  }
  const uint32_t hello[2] = {htonl(kMagic), htonl(static_cast<uint32_t>(o.rank))};
  const std::string peer = absl::StrCat("rank 0 at ", where);
  ZT_RETURN_IF_ERROR(Annotate(WriteAll(fd.get(), hello, sizeof(hello), deadline, peer),
                              absl::StrCat("TCP rendezvous, rank ", o.rank)));
  uint32_t header[2];
  ZT_RETURN_IF_ERROR(Annotate(ReadAll(fd.get(), header, sizeof(header), deadline, peer),
                              absl::StrCat("TCP rendezvous, rank ", o.rank)));
  const uint32_t size = ntohl(header[1]);
  if (ntohl(header[0]) != kMagic || size > kMaxPayload) {
    return absl::DataLossError(
        absl::StrCat("TCP rendezvous: rank ", o.rank, " got a malformed reply from ", peer));
  }
  std::string payload(size, '\0');
  ZT_RETURN_IF_ERROR(Annotate(ReadAll(fd.get(), payload.data(), size, deadline, peer),
                              absl::StrCat("TCP rendezvous, rank ", o.rank)));
  return payload;
}

}  // namespace

absl::StatusOr<std::string> TcpBroadcastFromRank0(const TcpRendezvousOptions& o,
                                                  absl::string_view payload) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP rendezvous: rank ", o.rank, " of world size ", o.world_size));
  }
  if (o.world_size > 1 && (o.master_port < 1 || o.master_port > 65535)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP rendezvous: MASTER_PORT ", o.master_port, " is not in [1, 65535]"));
  }
  if (payload.size() > kMaxPayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("TCP rendezvous: payload of ", payload.size(), " bytes is too large"));
  }
  if (o.world_size == 1) return std::string(payload);
  const absl::Time deadline = absl::Now() + o.timeout;
  if (o.rank == 0) return ServeRank0(o, payload, deadline);
  return JoinRank0(o, deadline);
}

}  // namespace zt
