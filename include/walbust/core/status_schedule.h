#pragma once
// When walbust talks to the walsender on its own initiative, decided in one place for every
// command that streams (run, dry-run): standby status updates every status interval, a
// reply request to a server silent for half the receive timeout, and the verdict that a
// server silent for the whole receive timeout is gone. It never does I/O and reads no clock:
// the caller passes the time and sends what is due.
//
// Guarantees the tests check:
//  - a status update is due no later than one status interval after the previous one,
//    whatever else the caller is busy with, as long as it asks;
//  - a silent server is asked for a reply at half the receive timeout, again at most every
//    quarter of it, and declared dead at the full timeout (like wal_receiver_timeout: TCP
//    alone may take minutes to notice a stranded connection);
//  - any frame from the server ends the silence; so does time the caller spent not reading
//    the socket (forgive_silence): silence then says nothing about the server;
//  - next_wakeup() is the earliest of these deadlines, so a caller that sleeps until then
//    misses none.
#include <chrono>
#include <string>

namespace walbust {

class StatusSchedule {
 public:
  using Clock = std::chrono::steady_clock;
  using Duration = std::chrono::milliseconds;

  static constexpr Duration kReceiveTimeout{30'000};
  // While waiting for --endpos on an idle database: how often to ask where the server is.
  static constexpr Duration kEndposProbe{200};

  StatusSchedule(Duration status_interval, Clock::time_point now);

  // wal_sender_timeout may force a shorter interval than configured.
  void set_status_interval(Duration interval) { status_interval_ = interval; }
  [[nodiscard]] Duration status_interval() const { return status_interval_; }

  // The stream (re)started: silence and status count from now.
  void restart(Clock::time_point now);
  // A frame arrived from the server.
  void received(Clock::time_point now) { last_received_ = now; }
  // The caller did not read the socket until now (blocked elsewhere).
  void forgive_silence(Clock::time_point now) { last_received_ = now; }
  // A status update went out (with a reply request when `asked_reply`).
  void status_sent(Clock::time_point now, bool asked_reply);

  [[nodiscard]] bool status_due(Clock::time_point now) const { return now >= next_status_; }

  enum class Silence { Fine, AskForReply, Dead };
  [[nodiscard]] Silence silence(Clock::time_point now) const;
  [[nodiscard]] Duration silent_for(Clock::time_point now) const;
  // What to tell the user when silence() is Dead.
  [[nodiscard]] std::string why_dead(Clock::time_point now) const;

  // For --endpos: a reply request is due to learn the server's position promptly.
  [[nodiscard]] bool endpos_probe_due(Clock::time_point now) const {
    return now - last_reply_request_ >= kEndposProbe;
  }

  [[nodiscard]] Clock::time_point next_status() const { return next_status_; }
  // The earliest deadline of this schedule (with the endpos probe when `probing_endpos`).
  [[nodiscard]] Clock::time_point next_wakeup(Clock::time_point now, bool probing_endpos) const;

 private:
  Duration status_interval_;
  Clock::time_point next_status_;
  Clock::time_point last_received_;
  Clock::time_point last_reply_request_{};
};

}  // namespace walbust
