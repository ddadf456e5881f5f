#pragma once
// Resolves the host names of a libpq conninfo without blocking the caller, so a
// connection served by the EventLoop never waits for DNS. libpq resolves names inside
// PQconnectStart/PQconnectPoll with a blocking getaddrinfo(); a resolver that hangs (a DNS
// outage takes seconds per attempt) would stall the replication stream with it.
//
// The lookups run in glibc's resolver (getaddrinfo_a), and the answer becomes keywords
// that follow the conninfo: `host` repeated once per address, with `hostaddr` listing the
// addresses, so libpq tries every address in order as it would have, verifies TLS
// against the name, and does no lookup of its own. Numeric addresses and socket
// directories need no lookup and are passed through with an empty `hostaddr` entry. Hosts
// that are not in the conninfo itself (a `service=` file, PGHOST) are not seen here and
// are still looked up by libpq.
#include <memory>
#include <string>
#include <vector>

struct addrinfo;

namespace walbust {

// One host name looked up in glibc's asynchronous resolver (getaddrinfo_a, for a stream
// socket). Never blocks: the lookup starts when constructed and is polled with running().
// Destroying it mid-lookup is safe: the request is kept until glibc is done with it.
class NameLookup {
 public:
  NameLookup(const std::string& name, const std::string& service);
  ~NameLookup();
  NameLookup(const NameLookup&) = delete;
  NameLookup& operator=(const NameLookup&) = delete;

  [[nodiscard]] bool running() const;
  // Once not running: 0 or the EAI_ code (gai_strerror), and the addresses when 0.
  [[nodiscard]] int error() const;
  [[nodiscard]] const addrinfo* result() const;

  // Addresses and socket paths need no lookup.
  [[nodiscard]] static bool needed(const std::string& host);

 private:
  struct Request;
  // Requests abandoned while glibc still writes into them, freed once it is done.
  static std::vector<std::unique_ptr<Request>>& graveyard();
  std::unique_ptr<Request> request_;
  int start_error_ = 0;
};

class HostResolver {
 public:
  // Parses `conninfo` and starts a lookup for each host name in it (none: done at once).
  explicit HostResolver(const std::string& conninfo);
  // A lookup still running is abandoned; its memory is freed once glibc finishes it.
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // True once every lookup ended. Never blocks.
  [[nodiscard]] bool done();
  // After done(): why a name could not be resolved ("" when all were).
  [[nodiscard]] const std::string& error() const { return error_; }
  // After done() without error: keyword/value pairs to append after the conninfo (they
  // override its host, hostaddr and port); empty when nothing needed a lookup.
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& params() const {
    return params_;
  }

 private:
  void finish();

  std::vector<std::string> hosts_;
  std::vector<std::string> ports_;
  std::vector<std::unique_ptr<NameLookup>> lookups_;  // one per host entry that is a name
  std::vector<std::pair<std::string, std::string>> params_;
  std::string error_;
  bool finished_ = false;
};

}  // namespace walbust
