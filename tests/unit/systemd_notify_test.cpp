#include "walbust/io/systemd_notify.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace walbust {
namespace {

// A unix datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  NotifySocket() {
    char tmpl[] = "/tmp/walbust-notify-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/notify";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

  // Every datagram received so far.
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    pollfd p{fd_, POLLIN, 0};
    while (poll(&p, 1, 100) > 0) {
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

class EnvGuard {
 public:
  explicit EnvGuard(std::vector<std::string> names) : names_(std::move(names)) {
    for (const auto& n : names_) unsetenv(n.c_str());
  }
  ~EnvGuard() {
    for (const auto& n : names_) unsetenv(n.c_str());
  }

 private:
  std::vector<std::string> names_;
};

TEST(SystemdNotifier, DisabledWithoutNotifySocket) {
  EnvGuard env({"NOTIFY_SOCKET"});
  SystemdNotifier n;
  EXPECT_FALSE(n.enabled());
  n.ready();  // no-ops
  n.status("x");
  n.watchdog();
}

TEST(SystemdNotifier, SendsMessagesInOrder) {
  EnvGuard env({"NOTIFY_SOCKET"});
  NotifySocket sock;
  setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  SystemdNotifier n;
  ASSERT_TRUE(n.enabled());
  n.ready();
  n.status("streaming, lag 0 B\nsecond line");
  n.watchdog();
  n.reloading();
  n.ready();
  n.stopping();
  const auto got = sock.drain();
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0], "READY=1");
  EXPECT_EQ(got[1], "STATUS=streaming, lag 0 B second line");
  EXPECT_EQ(got[2], "WATCHDOG=1");
  EXPECT_TRUE(got[3].starts_with("RELOADING=1\nMONOTONIC_USEC=")) << got[3];
  EXPECT_EQ(got[4], "READY=1");
  EXPECT_EQ(got[5], "STOPPING=1");
  // The environment stays for later calls.
  EXPECT_NE(getenv("NOTIFY_SOCKET"), nullptr);
}

TEST(SystemdNotifier, WatchdogInterval) {
  EnvGuard env({"WATCHDOG_USEC", "WATCHDOG_PID"});
  SystemdNotifier n;
  EXPECT_FALSE(n.watchdog_interval());

  setenv("WATCHDOG_USEC", "30000000", 1);
  ASSERT_TRUE(n.watchdog_interval());
  EXPECT_EQ(*n.watchdog_interval(), std::chrono::seconds(15));

  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  ASSERT_TRUE(n.watchdog_interval());
  EXPECT_EQ(*n.watchdog_interval(), std::chrono::seconds(15));

  // Meant for another process (e.g. inherited by a child): not ours to ping.
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_FALSE(n.watchdog_interval());

  unsetenv("WATCHDOG_PID");
  setenv("WATCHDOG_USEC", "garbage", 1);
  EXPECT_FALSE(n.watchdog_interval());
  setenv("WATCHDOG_USEC", "0", 1);
  EXPECT_FALSE(n.watchdog_interval());
}

}  // namespace
}  // namespace walbust
