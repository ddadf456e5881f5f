#include "walbust/io/event_loop.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>

namespace walbust {

EventLoop::EventLoop(int wake_fd, NowFn now, PollFn poll)
    : wake_fd_(wake_fd), now_(std::move(now)), poll_(std::move(poll)) {}

int EventLoop::system_poll(pollfd* fds, nfds_t count, std::chrono::nanoseconds timeout) {
  // Far deadlines (max(): none) are capped: a round every few days costs nothing.
  constexpr auto kLongest = std::chrono::hours(24 * 7);
  const auto wait = std::min<std::chrono::nanoseconds>(timeout, kLongest);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(wait);
  const timespec ts{static_cast<time_t>(secs.count()), static_cast<long>((wait - secs).count())};
  return ::ppoll(fds, count, &ts, nullptr);
}

void EventLoop::add(Source& source) {
  if (std::find(sources_.begin(), sources_.end(), &source) == sources_.end())
    sources_.push_back(&source);
}

void EventLoop::remove(Source& source) { std::erase(sources_, &source); }

bool EventLoop::run_once(Clock::time_point until, int fd) {
  // Slots 0 and 1 are the caller's fd and the wake fd; -1 makes poll() skip a slot.
  fds_.assign({pollfd{fd, POLLIN, 0}, pollfd{wake_fd_, POLLIN, 0}});
  first_fd_.clear();
  due_.clear();
  deferred_.clear();
  for (Source* s : sources_) {
    first_fd_.push_back(fds_.size());
    due_.push_back(s->prepare(fds_));
    until = std::min(until, due_.back());
    if (s->defers_fds()) {
      for (std::size_t i = first_fd_.back(); i < fds_.size(); ++i) deferred_.push_back(i);
    }
  }
  first_fd_.push_back(fds_.size());
  for (const std::size_t i : deferred_) fds_[i].fd = ~fds_[i].fd;  // poll() skips it

  const auto now = now_();
  const auto timeout = until > now
                           ? std::chrono::duration_cast<std::chrono::nanoseconds>(until - now)
                           : std::chrono::nanoseconds::zero();
  const int rc = poll_(fds_.data(), static_cast<nfds_t>(fds_.size()), timeout);
  if (rc < 0) {
    if (errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    for (auto& p : fds_) p.revents = 0;  // a signal: the wake fd says so next round
  }
  if (!deferred_.empty()) peek_deferred();
  if (fds_[1].revents != 0) {
    std::uint64_t drained = 0;
    (void)!::read(wake_fd_, &drained, sizeof drained);
  }
  const bool readable = fds_[0].revents != 0;
  const auto after = now_();
  caller_news_ = readable || fds_[1].revents != 0;
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const std::span<const pollfd> own(fds_.data() + first_fd_[i], first_fd_[i + 1] - first_fd_[i]);
    if (!caller_news_ && !sources_[i]->serves_itself()) {
      caller_news_ = due_[i] <= after || std::any_of(own.begin(), own.end(), [](const pollfd& p) {
                       return p.revents != 0;
                     });
    }
    sources_[i]->dispatch(after, own);
  }
  return readable;
}

void EventLoop::peek_deferred() {
  peek_.clear();
  for (const std::size_t i : deferred_) {
    fds_[i].fd = ~fds_[i].fd;
    peek_.push_back(pollfd{fds_[i].fd, fds_[i].events, 0});
  }
  if (poll_(peek_.data(), static_cast<nfds_t>(peek_.size()), std::chrono::nanoseconds::zero()) <
      0) {
    for (auto& p : peek_) p.revents = 0;  // nothing seen: the source's deadline comes
  }
  for (std::size_t k = 0; k < deferred_.size(); ++k) fds_[deferred_[k]].revents = peek_[k].revents;
}

bool EventLoop::run_until(Clock::time_point until, int fd) {
  while (true) {
    if (run_once(until, fd)) return true;
    if (caller_news_ || now_() >= until) return false;
  }
}

}  // namespace walbust
