#pragma once
// TLS to Redis with OpenSSL: one client context per target (CA, client certificate,
// verification), one session per connection, verified against the name that connection
// reaches (a cluster node's own host, never one name for all nodes). Debian 12's hiredis
// has no TLS, so the transport is ours and hiredis only parses and formats RESP.
#include <memory>
#include <string>

#include "walbust/core/settings.h"

struct ssl_ctx_st;
struct ssl_st;

namespace walbust {

class TlsContext {
 public:
  // Loads the CA, certificate and key. Throws RedisError(Fatal) naming the file and the
  // reason: an operator must fix these, retrying cannot help.
  explicit TlsContext(const RedisTlsSettings& settings);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A client session on a connected socket, set up to verify `name` (a DNS name or an IP
  // address; settings' server_name wins when set). The caller owns it (SSL_free).
  [[nodiscard]] ssl_st* new_session(int fd, const std::string& name) const;
  [[nodiscard]] const RedisTlsSettings& settings() const { return settings_; }

 private:
  RedisTlsSettings settings_;
  ssl_ctx_st* ctx_ = nullptr;
};

// The context for a section's settings, or null when TLS is off.
[[nodiscard]] std::shared_ptr<const TlsContext> make_tls_context(const RedisTlsSettings& settings);

// Why a key file must not be used, or "" when it may: missing, unreadable, or readable
// by others (like password files). Shared by config validation and connection setup.
[[nodiscard]] std::string key_file_problem(const std::string& path);

// Plain words for a failed handshake or TLS read: "unknown CA", "name mismatch",
// "certificate expired", "client certificate required", else OpenSSL's reason.
[[nodiscard]] std::string tls_failure_reason(ssl_st* ssl, int ssl_error);

}  // namespace walbust
