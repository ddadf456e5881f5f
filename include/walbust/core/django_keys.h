#pragma once
// Cache keys exactly as Django (>= 3.1) and django-redis build them, so walbust deletes the
// very keys a Django application wrote (docs/django.md).
#include <string>
#include <string_view>
#include <vector>

namespace walbust {

// Lower-case hex MD5 of `data`. Returns an empty string only when the crypto library
// refuses MD5 (e.g. a FIPS-only OpenSSL configuration); see md5_available().
[[nodiscard]] std::string md5_hex(std::string_view data);
// False when MD5 cannot be computed; rules using md5 or fragments are then rejected at load.
[[nodiscard]] bool md5_available();

// django.core.cache.backends.base.default_key_func: "PREFIX:VERSION:key".
[[nodiscard]] std::string django_make_key(std::string_view prefix, long long version,
                                          std::string_view key);

// django.core.cache.utils.make_template_fragment_key: "template.cache.NAME.MD5" where the
// MD5 runs over str(value) + ":" for each vary_on value (no values: MD5 of nothing).
[[nodiscard]] std::string django_fragment_key(std::string_view name,
                                              const std::vector<std::string>& vary_on);

}  // namespace walbust
