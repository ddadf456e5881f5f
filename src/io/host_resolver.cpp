#include "walbust/io/host_resolver.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace walbust {

struct NameLookup::Request {
  Request(const std::string& n, const std::string& s) : name(n), service(s) {
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    request.ar_name = name.c_str();
    request.ar_service = service.empty() ? nullptr : service.c_str();
    request.ar_request = &hints;
  }
  ~Request() {
    if (request.ar_result != nullptr) freeaddrinfo(request.ar_result);
  }
  bool running() { return gai_error(&request) == EAI_INPROGRESS; }

  std::string name;
  std::string service;
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

std::mutex& graveyard_mutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

// Never destroyed, so nothing is freed under glibc's feet at exit.
std::vector<std::unique_ptr<NameLookup::Request>>& NameLookup::graveyard() {
  static auto* requests = new std::vector<std::unique_ptr<NameLookup::Request>>();
  return *requests;
}

NameLookup::NameLookup(const std::string& name, const std::string& service)
    : request_(std::make_unique<Request>(name, service)) {
  gaicb* list[] = {&request_->request};
  start_error_ = getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr);
}

NameLookup::~NameLookup() {
  std::lock_guard lock(graveyard_mutex());
  auto& dead = graveyard();
  std::erase_if(dead, [](const auto& r) { return !r->running(); });
  if (start_error_ != 0 || !request_->running()) return;
  (void)gai_cancel(&request_->request);
  if (request_->running()) dead.push_back(std::move(request_));
}

bool NameLookup::running() const { return start_error_ == 0 && request_->running(); }

int NameLookup::error() const {
  return start_error_ != 0 ? start_error_ : gai_error(&request_->request);
}

const addrinfo* NameLookup::result() const { return request_->request.ar_result; }

bool NameLookup::needed(const std::string& host) {
  if (host.empty() || host.front() == '/' || host.front() == '@') return false;
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1;
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
  for (const auto& h : hosts_) {
    lookups_.push_back(NameLookup::needed(h) ? std::make_unique<NameLookup>(h, "") : nullptr);
    if (lookups_.back() != nullptr) finished_ = false;
  }
}

HostResolver::~HostResolver() = default;

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
    const NameLookup* l = lookups_[i].get();
    if (l == nullptr) {
      hosts.push_back(hosts_[i]);
      addrs.emplace_back();
      ports.push_back(port);
      continue;
    }
    if (const int rc = l->error(); rc != 0) {
      error_ =
          "could not translate host name \"" + hosts_[i] + "\" to address: " + gai_strerror(rc);
      return;
    }
    std::vector<std::string> seen;
    for (const addrinfo* a = l->result(); a != nullptr; a = a->ai_next) {
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
