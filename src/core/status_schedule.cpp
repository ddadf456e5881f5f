#include "walbust/core/status_schedule.h"

#include <algorithm>

namespace walbust {

StatusSchedule::StatusSchedule(Duration status_interval, Clock::time_point now)
    : status_interval_(status_interval), next_status_(now + status_interval), last_received_(now) {}

void StatusSchedule::restart(Clock::time_point now) {
  next_status_ = now + status_interval_;
  last_received_ = now;
  last_reply_request_ = Clock::time_point{};
}

void StatusSchedule::status_sent(Clock::time_point now, bool asked_reply) {
  next_status_ = now + status_interval_;
  if (asked_reply) last_reply_request_ = now;
}

StatusSchedule::Duration StatusSchedule::silent_for(Clock::time_point now) const {
  return std::chrono::duration_cast<Duration>(now - last_received_);
}

std::string StatusSchedule::why_dead(Clock::time_point now) const {
  return "no data from the server for " +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(silent_for(now)).count()) +
         " s although a reply was requested";
}

StatusSchedule::Silence StatusSchedule::silence(Clock::time_point now) const {
  const auto quiet = now - last_received_;
  if (quiet >= kReceiveTimeout) return Silence::Dead;
  // Asked again every quarter timeout: one lost request does not cost the connection.
  if (quiet >= kReceiveTimeout / 2 && now - last_reply_request_ >= kReceiveTimeout / 4)
    return Silence::AskForReply;
  return Silence::Fine;
}

StatusSchedule::Clock::time_point StatusSchedule::next_wakeup(Clock::time_point now,
                                                              bool probing_endpos) const {
  auto at = std::min(next_status_, last_received_ + kReceiveTimeout);
  const auto ask =
      std::max(last_received_ + kReceiveTimeout / 2, last_reply_request_ + kReceiveTimeout / 4);
  at = std::min(at, ask);
  if (probing_endpos) at = std::min(at, std::max(now, last_reply_request_ + kEndposProbe));
  return at;
}

}  // namespace walbust
