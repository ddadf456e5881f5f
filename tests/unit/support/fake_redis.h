#pragma once
// Scripted Redis servers for unit tests: a RedisTransport that parses the RESP commands a
// RedisClient writes and answers them at once from an in-memory keyspace per node, so the
// batch writer and the routers are tested without servers.
// It fakes: PING, AUTH, SELECT, ROLE, SENTINEL get-master-addr-by-name, WAIT, UNLINK, DEL,
// SET, EXISTS, FLUSHDB, SCAN MATCH (one page), PUBLISH, XADD (a stream is just a key), an
// error for every data command or for the commands holding a given key, and injected
// TRYAGAIN. A node given a FakeTopology is a cluster node: CLUSTER SLOTS, its own line of
// CLUSTER NODES, MOVED for slots it does not own, a migrating slot (ASK for keys it lacks,
// TRYAGAIN for multi-key commands it holds only part of, ASKING on the importing node),
// CROSSSLOT and CLUSTERDOWN; any other node refuses CLUSTER as a standalone server does.
// It does not fake: values or TTLs (a key exists or not), stream entries, partial reads or
// writes, timeouts, TLS, RESP3, replication, SCAN cursors, other nodes' CLUSTER NODES
// lines, or a command split over several writes.
#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "walbust/core/cluster_slots.h"
#include "walbust/core/rules.h"
#include "walbust/io/redis_client.h"
#include "walbust/io/redis_transport.h"

namespace walbust::testing {

// Who serves which slot, as the cluster nodes that share it believe; nodes that disagree
// (a failover in progress) are given topologies of their own.
struct FakeTopology {
  struct Range {
    std::uint16_t first = 0;
    std::uint16_t last = 0;
    std::string master;  // "host:port"
  };
  std::vector<Range> ranges;
  std::map<std::uint16_t, std::string> migrating;  // slot -> importing node "host:port"
  bool down = false;                               // every keyed command: CLUSTERDOWN

  // "host:port", or "" when no master serves the slot.
  [[nodiscard]] std::string owner(std::uint16_t slot) const {
    for (const auto& r : ranges) {
      if (r.first <= slot && slot <= r.last) return r.master;
    }
    return "";
  }
  // The end of a migration or a failover: one slot now lives on `node`.
  void assign(std::uint16_t slot, const std::string& node) {
    std::vector<Range> out;
    for (const auto& r : ranges) {
      if (slot < r.first || slot > r.last) {
        out.push_back(r);
        continue;
      }
      if (r.first < slot)
        out.push_back(Range{r.first, static_cast<std::uint16_t>(slot - 1), r.master});
      if (slot < r.last)
        out.push_back(Range{static_cast<std::uint16_t>(slot + 1), r.last, r.master});
    }
    out.push_back(Range{slot, slot, node});
    ranges = std::move(out);
  }
};

struct FakeNode {
  std::set<std::string> keys;
  std::string role = "master";
  int replicas = 0;              // what WAIT reports
  long long subscribers = 0;     // what PUBLISH reports
  std::string named_master;      // for a sentinel: "host:port", "" for nil
  std::string error;             // when set, every data command gets this error
  bool down = false;             // connections are refused
  std::vector<std::string> log;  // commands received, arguments joined by spaces

  std::string name;                               // "host:port", set when connected
  const FakeTopology* cluster = nullptr;          // set: a cluster node with this view
  std::map<std::string, std::string> key_errors;  // key -> error of every command holding it
  int try_again = 0;                              // the next keyed commands answer TRYAGAIN
  std::vector<std::size_t> writes;                // commands per write: one per pipeline
};

using FakeNodes = std::map<std::string, FakeNode>;  // by "host:port"

inline std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

// The keys a data command names; empty for commands without keys.
inline std::vector<std::string> command_keys(const std::vector<std::string>& argv) {
  const std::string& cmd = argv[0];
  if (cmd == "UNLINK" || cmd == "DEL") return {argv.begin() + 1, argv.end()};
  if ((cmd == "SET" || cmd == "EXISTS" || cmd == "XADD") && argv.size() > 1) return {argv[1]};
  return {};
}

inline std::string cluster_slots_reply(const FakeTopology& t) {
  std::string out = "*" + std::to_string(t.ranges.size()) + "\r\n";
  for (const auto& r : t.ranges) {
    const auto colon = r.master.rfind(':');
    out += "*3\r\n:" + std::to_string(r.first) + "\r\n:" + std::to_string(r.last) + "\r\n";
    out += "*3\r\n" + bulk(r.master.substr(0, colon)) + ":" + r.master.substr(colon + 1) + "\r\n" +
           bulk("id-" + r.master);
  }
  return out;
}

// The node's own line of CLUSTER NODES: its slots and its migrations, as
// "[slot->-target id]" on the source and "[slot-<-source id]" on the target.
inline std::string cluster_nodes_reply(const FakeNode& n) {
  std::string line = "id-" + n.name + " " + n.name + "@1 myself,master - 0 0 1 connected";
  for (const auto& r : n.cluster->ranges) {
    if (r.master == n.name) line += " " + std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  for (const auto& [slot, target] : n.cluster->migrating) {
    const std::string source = n.cluster->owner(slot);
    if (source == n.name) line += " [" + std::to_string(slot) + "->-id-" + target + "]";
    if (target == n.name) line += " [" + std::to_string(slot) + "-<-id-" + source + "]";
  }
  return bulk(line + "\n");
}

// What a cluster node answers instead of running a keyed command; "" when it runs it.
inline std::string cluster_refusal(const FakeNode& n, const std::vector<std::string>& keys,
                                   bool asking) {
  const FakeTopology& t = *n.cluster;
  const std::uint16_t slot = key_hash_slot(keys.front());
  for (const auto& k : keys) {
    if (key_hash_slot(k) != slot)
      return "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
  }
  const std::string owner = t.owner(slot);
  if (t.down) return "-CLUSTERDOWN The cluster is down\r\n";
  if (owner.empty()) return "-CLUSTERDOWN Hash slot not served\r\n";
  std::size_t present = 0;
  for (const auto& k : keys) present += n.keys.count(k);
  const bool missing = present < keys.size();
  const auto migration = t.migrating.find(slot);
  const bool migrating = migration != t.migrating.end();
  if (owner == n.name) {
    if (!migrating || !missing) return "";
    if (present > 0) return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
    return "-ASK " + std::to_string(slot) + " " + migration->second + "\r\n";
  }
  if (asking && migrating && migration->second == n.name) {
    if (keys.size() > 1 && missing)
      return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
    return "";
  }
  return "-MOVED " + std::to_string(slot) + " " + owner + "\r\n";
}

// Runs a data command on the node's keyspace.
inline std::string data_reply(FakeNode& n, const std::vector<std::string>& argv) {
  const std::string& cmd = argv[0];
  if (cmd == "UNLINK" || cmd == "DEL") {
    long long removed = 0;
    for (std::size_t i = 1; i < argv.size(); ++i)
      removed += static_cast<long long>(n.keys.erase(argv[i]));
    return ":" + std::to_string(removed) + "\r\n";
  }
  if (cmd == "SET") {
    n.keys.insert(argv[1]);
    return "+OK\r\n";
  }
  if (cmd == "EXISTS") return ":" + std::to_string(n.keys.count(argv[1])) + "\r\n";
  if (cmd == "PUBLISH") return ":" + std::to_string(n.subscribers) + "\r\n";
  if (cmd == "XADD") {
    n.keys.insert(argv[1]);
    return bulk("1-0");
  }
  if (cmd == "FLUSHDB") {
    n.keys.clear();
    return "+OK\r\n";
  }
  if (cmd == "SCAN") {
    std::string out;
    std::size_t count = 0;
    for (const auto& k : n.keys) {
      if (fnmatch(argv[3].c_str(), k.c_str(), 0) == 0) {
        out += bulk(k);
        ++count;
      }
    }
    return "*2\r\n" + bulk("0") + "*" + std::to_string(count) + "\r\n" + out;
  }
  return "-ERR unknown command '" + cmd + "'\r\n";
}

// What a keyed command gets before it touches the keyspace; "" when it runs.
inline std::string keyed_refusal(FakeNode& n, const std::vector<std::string>& argv, bool asking) {
  const auto keys = command_keys(argv);
  if (keys.empty()) return "";
  if (n.try_again > 0) {
    --n.try_again;
    return "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
  }
  if (n.cluster != nullptr) {
    if (auto refusal = cluster_refusal(n, keys, asking); !refusal.empty()) return refusal;
  }
  for (const auto& k : keys) {
    if (auto it = n.key_errors.find(k); it != n.key_errors.end()) return "-" + it->second + "\r\n";
  }
  return "";
}

// `asking` is the connection's ASKING flag: set by ASKING, spent by the next command.
inline std::string reply_for(FakeNode& n, const std::vector<std::string>& argv, bool& asking) {
  const bool asked = std::exchange(asking, false);
  const std::string& cmd = argv[0];
  if (cmd == "PING") return "+PONG\r\n";
  if (cmd == "AUTH" || cmd == "SELECT") return "+OK\r\n";
  if (cmd == "ROLE") return "*1\r\n" + bulk(n.role);
  if (cmd == "SENTINEL") {
    if (n.named_master.empty()) return "*-1\r\n";
    const auto colon = n.named_master.rfind(':');
    return "*2\r\n" + bulk(n.named_master.substr(0, colon)) +
           bulk(n.named_master.substr(colon + 1));
  }
  if (cmd == "WAIT") return ":" + std::to_string(n.replicas) + "\r\n";
  if (n.cluster != nullptr && cmd == "ASKING") {
    asking = true;
    return "+OK\r\n";
  }
  if (cmd == "CLUSTER") {
    if (n.cluster == nullptr) return "-ERR This instance has cluster support disabled\r\n";
    if (argv.size() == 2 && argv[1] == "SLOTS") return cluster_slots_reply(*n.cluster);
    if (argv.size() == 2 && argv[1] == "NODES") return cluster_nodes_reply(n);
  }
  if (!n.error.empty()) return "-" + n.error + "\r\n";
  if (auto refusal = keyed_refusal(n, argv, asked); !refusal.empty()) return refusal;
  return data_reply(n, argv);
}

// Parses the RESP arrays a client writes and queues the node's replies.
class FakeTransport final : public RedisTransport {
 public:
  explicit FakeTransport(FakeNode& node) : node_(node) {}
  [[nodiscard]] int fd() const override { return -1; }
  // Replies are there the moment a command is written: never wait for the fd.
  [[nodiscard]] bool buffered() const override { return !out_.empty(); }
  Io read(char* buf, std::size_t len) override {
    if (out_.empty()) return Io{0, Want::Read};
    const std::size_t n = std::min(len, out_.size());
    out_.copy(buf, n);
    out_.erase(0, n);
    return Io{n, Want::None};
  }
  Io write(const char* buf, std::size_t len) override {
    in_.append(buf, len);
    std::size_t commands = 0;
    while (auto argv = next_command()) {
      ++commands;
      std::string line;
      for (const auto& a : *argv) line += (line.empty() ? "" : " ") + a;
      node_.log.push_back(line);
      out_ += reply_for(node_, *argv, asking_);
    }
    node_.writes.push_back(commands);
    return Io{len, Want::None};
  }

 private:
  std::optional<std::vector<std::string>> next_command() {
    // *N\r\n then N times $len\r\narg\r\n; the tests write whole commands only.
    if (in_.empty()) return std::nullopt;
    std::size_t pos = in_.find("\r\n");
    const int n = std::stoi(in_.substr(1, pos - 1));
    pos += 2;
    std::vector<std::string> argv;
    for (int i = 0; i < n; ++i) {
      const std::size_t eol = in_.find("\r\n", pos);
      const std::size_t len = std::stoul(in_.substr(pos + 1, eol - pos - 1));
      argv.push_back(in_.substr(eol + 2, len));
      pos = eol + 2 + len + 2;
    }
    in_.erase(0, pos);
    return argv;
  }

  FakeNode& node_;
  std::string in_;
  std::string out_;
  bool asking_ = false;
};

// Connections to "host:port" reach nodes["host:port"] (created on first use).
inline RedisConnectionOptions fake_options(FakeNodes& nodes) {
  RedisConnectionOptions o;
  o.opener = [&nodes](const RedisEndpoint& ep, std::chrono::milliseconds,
                      const TlsContext*) -> std::unique_ptr<RedisTransport> {
    const std::string name = ep.host + ":" + std::to_string(ep.port);
    FakeNode& n = nodes[name];
    n.name = name;
    if (n.down) throw RedisError(RedisErrorClass::Retry, "connection refused");
    return std::make_unique<FakeTransport>(n);
  };
  return o;
}

inline RedisEndpoint endpoint(const std::string& host, int port) {
  RedisEndpoint ep;
  ep.host = host;
  ep.port = port;
  return ep;
}

inline Action make(ActionKind kind, std::string key, std::string value = "") {
  Action a;
  a.kind = kind;
  a.key = std::move(key);
  a.value = std::move(value);
  return a;
}

inline std::vector<const Action*> pointers(const std::vector<Action>& actions) {
  std::vector<const Action*> out;
  for (const auto& a : actions) out.push_back(&a);
  return out;
}

// The log without connection set-up and discovery (PING, ROLE, SENTINEL, CLUSTER).
inline std::vector<std::string> data_commands(const FakeNode& n) {
  std::vector<std::string> out;
  for (const auto& l : n.log) {
    if (l != "PING" && l.rfind("ROLE", 0) != 0 && l.rfind("SENTINEL", 0) != 0 &&
        l.rfind("CLUSTER", 0) != 0) {
      out.push_back(l);
    }
  }
  return out;
}

}  // namespace walbust::testing
