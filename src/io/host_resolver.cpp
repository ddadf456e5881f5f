#include "walbust/io/host_resolver.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace walbust {

struct HostResolver::Lookup {
  explicit Lookup(std::string n) : name(std::move(n)) {
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    request.ar_name = name.c_str();
    request.ar_request = &hints;
  }
  ~Lookup() {
    if (request.ar_result != nullptr) freeaddrinfo(request.ar_result);
  }
  bool running() { return gai_error(&request) == EAI_INPROGRESS; }

  std::string name;
  addrinfo hints{};
  gaicb request{};
};

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    out.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : ",") + items[i];
  return out;
}

// Host entries libpq connects to without a lookup: socket directories and addresses.
bool needs_lookup(const std::string& host) {
  if (host.empty() || host.front() == '/' || host.front() == '@') return false;
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1;
}

std::mutex& graveyard_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

// Never destroyed, so nothing is freed under glibc's feet at exit.
std::vector<std::unique_ptr<HostResolver::Lookup>>& HostResolver::graveyard() {
  static auto* lookups = new std::vector<std::unique_ptr<Lookup>>();
  return *lookups;
}

HostResolver::HostResolver(const std::string& conninfo) {
  finished_ = true;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    PQfreemem(err);
    return;  // libpq reports the malformed conninfo when connecting
  }
  std::string host, hostaddr, port;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (std::strcmp(o->keyword, "host") == 0) host = o->val;
    if (std::strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
    if (std::strcmp(o->keyword, "port") == 0) port = o->val;
  }
  PQconninfoFree(opts);
  if (!hostaddr.empty()) return;  // the user chose the addresses
  hosts_ = split_list(host);
  ports_ = split_list(port);
  std::vector<gaicb*> requests;
  for (const auto& h : hosts_) {
    if (!needs_lookup(h)) {
      lookups_.push_back(nullptr);
      continue;
    }
    lookups_.push_back(std::make_unique<Lookup>(h));
    requests.push_back(&lookups_.back()->request);
  }
  if (requests.empty()) return;
  finished_ = false;
  const int rc =
      getaddrinfo_a(GAI_NOWAIT, requests.data(), static_cast<int>(requests.size()), nullptr);
  if (rc != 0) {
    error_ = std::string("cannot start resolving host names: ") + gai_strerror(rc);
    finished_ = true;
  }
}

HostResolver::~HostResolver() {
  std::lock_guard lock(graveyard_mutex());
  auto& dead = graveyard();
  std::erase_if(dead, [](const auto& l) { return !l->running(); });
  for (auto& l : lookups_) {
    if (l == nullptr || !l->running()) continue;
    (void)gai_cancel(&l->request);
    if (l->running()) dead.push_back(std::move(l));
  }
}

bool HostResolver::done() {
  if (finished_) return true;
  for (auto& l : lookups_) {
    if (l != nullptr && l->running()) return false;
  }
  finish();
  return true;
}

void HostResolver::finish() {
  finished_ = true;
  std::vector<std::string> hosts, addrs, ports;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    const std::string port =
        ports_.size() == hosts_.size() ? ports_[i] : (ports_.empty() ? "" : ports_.front());
    Lookup* l = lookups_[i].get();
    if (l == nullptr) {
      hosts.push_back(hosts_[i]);
      addrs.emplace_back();
      ports.push_back(port);
      continue;
    }
    if (const int rc = gai_error(&l->request); rc != 0) {
      error_ =
          "could not translate host name \"" + hosts_[i] + "\" to address: " + gai_strerror(rc);
      return;
    }
    std::vector<std::string> seen;
    for (const addrinfo* a = l->request.ar_result; a != nullptr; a = a->ai_next) {
      char text[NI_MAXHOST];
      if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) !=
          0)
        continue;
      if (std::find(seen.begin(), seen.end(), text) != seen.end()) continue;
      seen.emplace_back(text);
      hosts.push_back(hosts_[i]);
      addrs.emplace_back(text);
      ports.push_back(port);
    }
    if (seen.empty()) {
      error_ = "could not translate host name \"" + hosts_[i] + "\" to address: no address";
      return;
    }
  }
  params_.emplace_back("host", join_list(hosts));
  params_.emplace_back("hostaddr", join_list(addrs));
  if (!ports_.empty()) params_.emplace_back("port", join_list(ports));
}

}  // namespace walbust
