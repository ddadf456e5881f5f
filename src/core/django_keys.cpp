#include "walbust/core/django_keys.h"

#include <openssl/evp.h>

#include <array>
#include <memory>

namespace walbust {
namespace {

struct DigestContextFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using DigestContext = std::unique_ptr<EVP_MD_CTX, DigestContextFree>;

std::string to_hex(const unsigned char* bytes, unsigned int length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<std::size_t>(length) * 2, '\0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0x0f];
  }
  return out;
}

// Feeds each piece in turn into one MD5 computation; empty string on any failure.
template <typename Feed>
std::string md5_of(Feed&& feed) {
  DigestContext ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1) return {};
  if (!feed([&](std::string_view piece) {
        return EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) == 1;
      })) {
    return {};
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1) return {};
  return to_hex(digest.data(), length);
}

}  // namespace

std::string md5_hex(std::string_view data) {
  return md5_of([&](auto&& update) { return update(data); });
}

bool md5_available() { return md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e"; }

std::string django_make_key(std::string_view prefix, long long version, std::string_view key) {
  std::string out;
  const std::string v = std::to_string(version);
  out.reserve(prefix.size() + v.size() + key.size() + 2);
  out.append(prefix).append(":").append(v).append(":").append(key);
  return out;
}

std::string django_fragment_key(std::string_view name, const std::vector<std::string>& vary_on) {
  const std::string hash = md5_of([&](auto&& update) {
    for (const auto& value : vary_on) {
      if (!update(value) || !update(":")) return false;
    }
    return true;
  });
  std::string out = "template.cache.";
  out.append(name).append(".").append(hash);
  return out;
}

}  // namespace walbust
