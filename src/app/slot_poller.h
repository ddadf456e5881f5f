#pragma once
// Reads the slot's state from the server on an ordinary connection, so the lag metric is
// the server's own view (pg_current_wal_lsn() - confirmed_flush_lsn), not a guess, and
// so an approaching slot loss (safe_wal_size) is visible before it happens.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "run_metrics.h"

namespace walbust {

class SlotPoller {
 public:
  SlotPoller(std::string conninfo, std::string password, std::string slot,
             std::chrono::milliseconds interval, RunMetrics& metrics);
  ~SlotPoller();
  void start();
  void stop();

 private:
  void run();
  std::string conninfo_;
  std::string password_;
  std::string slot_;
  std::chrono::milliseconds interval_;
  RunMetrics& metrics_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int socket_ = -1;  // the poller connection's socket, guarded by mu_
};

}  // namespace walbust
