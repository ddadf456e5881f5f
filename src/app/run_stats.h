#pragma once
// Counters shared by the source and sink threads, read by the progress log, the metrics
// endpoint and systemd STATUS=.
#include <atomic>
#include <cstdint>

#include "walbust/lsn.h"

namespace walbust {

struct RunStats {
  std::atomic<std::uint64_t> changes{0};
  std::atomic<std::uint64_t> transactions{0};
  std::atomic<std::uint64_t> actions{0};
  std::atomic<std::uint64_t> keys_deleted{0};
  std::atomic<std::uint64_t> keys_existed{0};
  std::atomic<std::uint64_t> redis_commands{0};
  std::atomic<std::uint64_t> redis_errors{0};
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> render_failures{0};
  std::atomic<std::uint64_t> pg_reconnects{0};
  std::atomic<std::uint64_t> redis_reconnects{0};
  std::atomic<Lsn> server_wal_end{0};  // newest position the server reported
  std::atomic<bool> redis_up{false};
  std::atomic<bool> streaming{false};
};

}  // namespace walbust
