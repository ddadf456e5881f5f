#include "walbust/io/redis_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "walbust/io/redis_client.h"

namespace walbust {
namespace {

std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

[[noreturn]] void fail(const std::string& what) {
  throw RedisError(RedisErrorClass::Fatal, "tls: " + what + ": " + openssl_errors());
}

bool is_ip_address(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

std::string verify_reason(long result) {
  switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "unknown CA";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "name mismatch";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "certificate not yet valid";
    default:
      return "";
  }
}

}  // namespace

std::string key_file_problem(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string("cannot read it: ") + std::strerror(errno);
  // A private key readable by every local user is a leak waiting to happen, as for
  // password files; the group may read it (Debian's ssl-cert convention).
  if ((st.st_mode & S_IROTH) != 0) return "it is readable by others; run: chmod o-rwx " + path;
  if (::access(path.c_str(), R_OK) != 0)
    return std::string("cannot read it: ") + std::strerror(errno);
  return "";
}

std::string tls_failure_reason(ssl_st* ssl, int ssl_error) {
  if (ssl != nullptr) {
    const long result = SSL_get_verify_result(ssl);
    if (result != X509_V_OK) {
      std::string reason = verify_reason(result);
      const std::string detail = X509_verify_cert_error_string(result);
      ERR_clear_error();
      return reason.empty() ? detail : reason + " (" + detail + ")";
    }
  }
  const unsigned long e = ERR_peek_last_error();
  if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) {
    const int r = ERR_GET_REASON(e);
    std::string detail = openssl_errors();
    // TLS 1.3 servers check the client certificate after the client finished its
    // handshake: the refusal arrives as an alert on the first read.
    if (r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
        r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
      return "client certificate required or refused (" + detail + ")";
    }
    if (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG) {
      return "the server does not speak TLS on this port (" + detail + ")";
    }
    return detail;
  }
  if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    // A server that requires a client certificate closes the connection when none came.
    if (ssl != nullptr && SSL_get_certificate(ssl) == nullptr) {
      return "the server closed the TLS connection (servers that require a client certificate "
             "do this, and no cert_file is configured)";
    }
    return "the server closed the TLS connection";
  }
  return openssl_errors();
}

TlsContext::TlsContext(const RedisTlsSettings& settings) : settings_(settings) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (settings_.verify) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    const int loaded = settings_.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx_)
                                                 : SSL_CTX_load_verify_locations(
                                                       ctx_, settings_.ca_file.c_str(), nullptr);
    if (loaded != 1) {
      fail(settings_.ca_file.empty() ? "cannot load the system trust store"
                                     : "cannot load ca_file " + settings_.ca_file);
    }
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  if (!settings_.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx_, settings_.cert_file.c_str()) != 1) {
      fail("cannot load cert_file " + settings_.cert_file);
    }
    const std::string key = settings_.key_file.empty() ? settings_.cert_file : settings_.key_file;
    if (const std::string problem = key_file_problem(key); !problem.empty()) {
      throw RedisError(RedisErrorClass::Fatal, "tls: key_file " + key + ": " + problem);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail("cannot load key_file " + key);
    }
    if (SSL_CTX_check_private_key(ctx_) != 1) fail("key_file does not match cert_file");
  }
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

ssl_st* TlsContext::new_session(int fd, const std::string& name) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) fail("cannot create a TLS session");
  const std::string& verified = settings_.server_name.empty() ? name : settings_.server_name;
  bool ok = SSL_set_fd(ssl, fd) == 1;
  if (is_ip_address(verified)) {
    // SNI carries host names only; an address is checked against the IP SANs.
    if (settings_.verify)
      ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verified.c_str()) == 1;
  } else {
    ok = ok && SSL_set_tlsext_host_name(ssl, verified.c_str()) == 1;
    if (settings_.verify) ok = ok && SSL_set1_host(ssl, verified.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    fail("cannot set up a TLS session for " + verified);
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

std::shared_ptr<const TlsContext> make_tls_context(const RedisTlsSettings& settings) {
  if (!settings.enabled) return nullptr;
  return std::make_shared<const TlsContext>(settings);
}

}  // namespace walbust
