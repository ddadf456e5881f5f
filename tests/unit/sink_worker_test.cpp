// The scheduling of Redis targets on the stream's EventLoop, on a simulated clock: a fake
// poll() advances time to the next fd that becomes ready or the next deadline, so a
// minute of a stalled Redis takes microseconds and every lateness is measured exactly.
#include "sink_worker.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "walbust/io/redis_client.h"

namespace walbust {
namespace {

using namespace std::chrono_literals;
using Clock = EventLoop::Clock;
using std::chrono::milliseconds;

constexpr auto kRedisTimeout = 2000ms;  // RedisClient's default
constexpr int kWakeFd = 1000;

// The fds of the simulated world and when each becomes readable.
struct Sim {
  Clock::time_point now = Clock::time_point{} + 1000h;
  std::map<int, Clock::time_point> ready_at;
  int waits = 0;  // polls that could have put the thread to sleep

  int poll(pollfd* fds, nfds_t count, std::chrono::nanoseconds timeout) {
    if (timeout != timeout.zero()) ++waits;
    auto until =
        timeout >= Clock::time_point::max() - now ? Clock::time_point::max() : now + timeout;
    for (nfds_t i = 0; i < count; ++i) {
      const auto it = ready_at.find(fds[i].fd);
      if (it != ready_at.end()) until = std::min(until, it->second);
    }
    EXPECT_NE(until, Clock::time_point::max()) << "the loop would wait forever";
    if (until == Clock::time_point::max()) return 0;
    now = std::max(now, until);
    int ready = 0;
    for (nfds_t i = 0; i < count; ++i) {
      const auto it = ready_at.find(fds[i].fd);
      fds[i].revents = (it != ready_at.end() && it->second <= now) ? POLLIN : 0;
      ready += fds[i].revents != 0 ? 1 : 0;
    }
    return ready;
  }
};

// A Redis connection of the simulated world: each batch is answered `latency` after it
// was sent, or when a stall ends; a batch not answered within kRedisTimeout fails like
// RedisClient's would.
class FakeSink final : public KeySink {
 public:
  FakeSink(Sim& sim, int fd) : sim_(sim), fd_(fd) {}
  ~FakeSink() override { sim_.ready_at.erase(fd_); }

  milliseconds latency{1};
  Clock::time_point stalled_until{};
  std::vector<Clock::time_point> sent;       // when each attempt was written
  std::vector<Clock::time_point> confirmed;  // when each batch was answered
  std::vector<std::string> keys;             // every key Redis confirmed, in order

  void connect() override { connected_ = true; }
  void close() override { connected_ = false; }
  [[nodiscard]] bool connected() const override { return connected_; }
  [[nodiscard]] std::string describe() const override { return "fake:" + std::to_string(fd_); }
  BatchResult apply(const std::vector<const Action*>& actions) override {
    sent.push_back(sim_.now);
    sim_.ready_at[fd_] = std::max(sim_.now + latency, stalled_until);
    const auto wake = fiber_wait(fd_, POLLIN, kRedisTimeout);
    sim_.ready_at.erase(fd_);
    if (wake != Fiber::Wake::Ready) {
      throw RedisError(RedisErrorClass::Retry, "waiting for Redis timed out");
    }
    confirmed.push_back(sim_.now);
    BatchResult r;
    for (const Action* a : actions) keys.push_back(a->key);
    r.keys = actions.size();
    return r;
  }
  std::vector<bool> exists(const std::vector<std::string>&) override { return {}; }
  std::size_t count_matching(const std::string&, std::size_t, bool&) override { return 0; }
  void flush_database() override {}
  std::vector<RedisClient*> masters() override { return {}; }

 private:
  Sim& sim_;
  int fd_;
  bool connected_ = false;
};

// The stream's side: a loop, one SinkWorker per target, an AckTracker, and a walsender
// that wants a status reply every 100 ms.
class Harness {
 public:
  explicit Harness(std::size_t targets)
      : names_(make_names(targets)),
        metrics_(names_),
        tracker_(targets),
        loop_(
            kWakeFd, [this] { return sim.now; },
            [this](pollfd* fds, nfds_t n, std::chrono::nanoseconds t) {
              return sim.poll(fds, n, t);
            }) {
    BatchSettings batch;
    batch.max_keys = 100;
    for (std::size_t i = 0; i < targets; ++i) {
      const int fd = 100 + static_cast<int>(i);
      sinks_.push_back(std::make_unique<SinkWorker>(
          i, names_[i],
          [this, i, fd] {
            auto s = std::make_unique<FakeSink>(sim, fd);
            fakes_[i] = s.get();
            return s;
          },
          batch, tracker_, *metrics_.targets[i], metrics_.redeletes, [this] { return sim.now; }));
      loop_.add(*sinks_.back());
    }
    fakes_.resize(targets);
    for (auto& s : sinks_) s->start();
  }
  ~Harness() {
    for (auto& s : sinks_) loop_.remove(*s);
  }

  Sim sim;
  FakeSink& redis(std::size_t t) { return *fakes_.at(t); }
  SinkWorker& sink(std::size_t t) { return *sinks_.at(t); }
  AckTracker& tracker() { return tracker_; }
  EventLoop& loop() { return loop_; }
  TargetMetrics& metrics(std::size_t t) { return *metrics_.targets.at(t); }

  // One transaction of `keys` deletes, handed to every target with its commit marker.
  Lsn commit(int keys) {
    tracker_.begin();
    const Lsn lsn = next_lsn_ += 100;
    for (std::size_t t = 0; t < sinks_.size(); ++t) {
      std::vector<QueueItem> items;
      for (int k = 0; k < keys; ++k) {
        QueueItem item;
        item.action.key = "k" + std::to_string(lsn) + ":" + std::to_string(k);
        items.push_back(std::move(item));
      }
      QueueItem marker;
      marker.kind = QueueItem::Kind::Commit;
      marker.ticket = t == 0 ? (ticket_ = tracker_.commit(lsn)) : ticket_;
      marker.end_lsn = lsn;
      items.push_back(marker);
      sinks_[t]->push(items);
    }
    return lsn;
  }

  // Runs the loop as the stream does for `duration`, replying to the walsender every
  // 100 ms. Returns the latest any reply was sent after it was due.
  Clock::duration serve(Clock::duration duration) {
    const auto end = sim.now + duration;
    Clock::duration worst{0};
    while (sim.now < end) {
      (void)loop_.run_once(std::min(next_status_, end));
      if (sim.now >= next_status_) {
        worst = std::max(worst, sim.now - next_status_);
        ++replies_;
        next_status_ += 100ms;
      }
    }
    return worst;
  }
  [[nodiscard]] int replies() const { return replies_; }

 private:
  static std::vector<std::string> make_names(std::size_t n) {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back("t" + std::to_string(i));
    return v;
  }

  std::vector<std::string> names_;
  RunMetrics metrics_;
  AckTracker tracker_;
  EventLoop loop_;
  std::vector<std::unique_ptr<SinkWorker>> sinks_;
  std::vector<FakeSink*> fakes_;
  Lsn next_lsn_ = 1000;
  AckTracker::Ticket ticket_ = 0;
  Clock::time_point next_status_ = sim.now + 100ms;
  int replies_ = 0;
};

TEST(SinkWorker, ABatchHandedToAnIdleTargetIsWrittenBeforePushReturns) {
  Harness h(1);
  const auto before = h.sim.now;
  const Lsn lsn = h.commit(3);
  ASSERT_EQ(h.redis(0).sent.size(), 1U);
  EXPECT_EQ(h.redis(0).sent[0], before);
  EXPECT_EQ(h.tracker().flush_lsn(), kInvalidLsn);  // written, not yet confirmed
  (void)h.serve(10ms);
  EXPECT_EQ(h.tracker().flush_lsn(), lsn);
  EXPECT_EQ(h.redis(0).confirmed.at(0), before + 1ms);
}

TEST(SinkWorker, TheNextBatchFormsWhileOneIsInFlightAndKeepsItsOrder) {
  Harness h(1);
  h.redis(0).latency = 50ms;
  Lsn last = 0;
  for (int i = 0; i < 5; ++i) last = h.commit(2);  // one in flight, four waiting
  EXPECT_EQ(h.redis(0).sent.size(), 1U);
  EXPECT_EQ(h.sink(0).queued(), 12U);
  (void)h.serve(200ms);
  // The four that waited went out as one pipeline once the first was answered.
  EXPECT_EQ(h.redis(0).sent.size(), 2U);
  EXPECT_EQ(h.tracker().flush_lsn(), last);
  std::vector<std::string> expected;
  for (Lsn lsn = 1100; lsn <= last; lsn += 100) {
    for (int k = 0; k < 2; ++k)
      expected.push_back("k" + std::to_string(lsn) + ":" + std::to_string(k));
  }
  EXPECT_EQ(h.redis(0).keys, expected);
}

TEST(SinkWorker, AReplyNothingWaitsOnRidesAlongWithTheStreamsNextWakeUp) {
  Harness h(1);
  h.redis(0).latency = 0ms;  // answered before the thread could even sleep
  const int stream = 50;
  const auto start = h.sim.now;
  const Lsn first = h.commit(1);
  h.sim.ready_at[stream] = start + 500us;  // the next transaction arrives
  const int waits = h.sim.waits;
  EXPECT_TRUE(h.loop().run_until(start + 1s, stream));
  EXPECT_EQ(h.sim.waits, waits + 1) << "the reply alone did not wake the thread";
  EXPECT_EQ(h.sim.now, start + 500us);
  EXPECT_EQ(h.tracker().flush_lsn(), first) << "and it was read in that round";
  h.sim.ready_at.erase(stream);
  // With nothing else to wake for, the reply waits at most kReplyDeferral.
  const Lsn second = h.commit(1);
  (void)h.loop().run_once(start + 1s);
  EXPECT_EQ(h.sim.now, start + 500us + SinkWorker::kReplyDeferral);
  EXPECT_EQ(h.tracker().flush_lsn(), second);
}

TEST(SinkWorker, ABatchWaitingBehindAReplyEndsItsDeferral) {
  Harness h(1);
  h.redis(0).latency = 0ms;
  const auto start = h.sim.now;
  (void)h.commit(1);            // in flight, its reply already there
  const Lsn lsn = h.commit(1);  // waits for that reply
  (void)h.loop().run_once(start + 1s);
  ASSERT_EQ(h.redis(0).sent.size(), 2U);
  EXPECT_EQ(h.redis(0).sent[1], start) << "the second batch went out without a deferral";
  (void)h.serve(5ms);
  EXPECT_EQ(h.tracker().flush_lsn(), lsn);
}

TEST(SinkWorker, ARedisStalledForAMinuteNeverDelaysAStatusReply) {
  Harness h(1);
  h.redis(0).stalled_until = h.sim.now + 60s;
  const Lsn lsn = h.commit(5);
  const auto worst = h.serve(59s);
  EXPECT_EQ(worst, Clock::duration{0}) << "a status reply waited for Redis";
  EXPECT_GE(h.replies(), 589);
  // Nothing is acknowledged while Redis does not answer; every attempt timed out.
  EXPECT_EQ(h.tracker().flush_lsn(), kInvalidLsn);
  EXPECT_GE(h.redis(0).sent.size(), 5U);
  EXPECT_GE(h.metrics(0).errors.value(), 5.0);
  EXPECT_FALSE(h.metrics(0).up.load());
  EXPECT_EQ(h.serve(15s), Clock::duration{0});  // the stall ends; backoff is at most 10s
  EXPECT_EQ(h.tracker().flush_lsn(), lsn);
  EXPECT_TRUE(h.metrics(0).up.load());
  EXPECT_EQ(h.metrics(0).reconnects.value(), 1.0);
}

TEST(SinkWorker, ASlowTargetDelaysOnlyItselfAndTheAcknowledgement) {
  Harness h(2);
  h.redis(1).latency = 1500ms;  // slow, within the timeout
  for (int i = 0; i < 20; ++i) {
    (void)h.commit(1);
    ASSERT_EQ(h.serve(50ms), Clock::duration{0});
    // The fast target answered this transaction within its 1 ms.
    EXPECT_EQ(h.redis(0).confirmed.size(), static_cast<std::size_t>(i + 1));
  }
  // The slow one took everything in few, larger batches; the acknowledgement waits for it.
  EXPECT_LE(h.redis(1).sent.size(), 2U);
  EXPECT_EQ(h.tracker().pending(), 20U);
  EXPECT_EQ(h.serve(3s), Clock::duration{0});
  EXPECT_EQ(h.tracker().pending(), 0U);
  EXPECT_EQ(h.redis(1).keys, h.redis(0).keys);
}

TEST(SinkWorker, AStopMidBatchEndsTheTargetWithoutConfirmingWhatRedisDidNotAnswer) {
  Harness h(1);
  h.redis(0).stalled_until = h.sim.now + 1h;
  (void)h.commit(3);
  // The signal handler writes the wake fd: the loop returns at once, mid-batch.
  h.sim.ready_at[kWakeFd] = h.sim.now + 30ms;
  const auto before = h.sim.now;
  (void)h.loop().run_until(h.sim.now + 10s, -1);
  EXPECT_EQ(h.sim.now - before, 30ms);
  h.sim.ready_at.erase(kWakeFd);
  // Shutdown: no more work, a grace period, then the target is abandoned.
  h.sink(0).close();
  (void)h.serve(1s);
  EXPECT_FALSE(h.sink(0).finished());
  h.sink(0).abandon();
  EXPECT_TRUE(h.sink(0).finished());
  EXPECT_FALSE(h.sink(0).failed());
  EXPECT_EQ(h.tracker().flush_lsn(), kInvalidLsn);
}

TEST(SinkWorker, AStopMidBatchWaitsForTheAnswerWithinTheGracePeriod) {
  Harness h(1);
  h.redis(0).latency = 300ms;
  const Lsn lsn = h.commit(3);
  h.sink(0).close();
  (void)h.serve(1s);
  EXPECT_TRUE(h.sink(0).finished());
  EXPECT_EQ(h.tracker().flush_lsn(), lsn);
}

}  // namespace
}  // namespace walbust
