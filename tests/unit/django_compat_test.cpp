// Byte-exact compatibility with Django: the expected keys are computed by the real
// Django (Debian's python3-django) in a child process. Missing Python or Django fails.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "walbust/core/django_keys.h"

namespace walbust {
namespace {

using nlohmann::json;

constexpr const char* kScript = R"PY(
import json, sys
from django.conf import settings
settings.configure()
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.utils import make_template_fragment_key
data = json.load(open(sys.argv[1], encoding="utf-8"))
out = {
    "make_key": [LocMemCache("t", {"KEY_PREFIX": c["prefix"], "VERSION": c["version"]}).make_key(c["key"])
                 for c in data["make_key"]],
    "fragment": [make_template_fragment_key(c["name"], c["python"]) for c in data["fragment"]],
    "fragment_cached": [
        LocMemCache("t", {"KEY_PREFIX": c["prefix"], "VERSION": 1}).make_key(
            make_template_fragment_key(c["name"], c["python"]))
        for c in data["fragment"]],
}
sys.stdout.write(json.dumps(out))
)PY";

std::string run(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  if (status != 0) output = "exit status " + std::to_string(status) + ": " + output;
  return output;
}

// Each fragment case: the Python values Django sees, and the text walbust renders for
// them (PostgreSQL's text output through the `python` filter or the null literal).
struct FragmentInput {
  std::string name;
  json python;
  std::vector<std::string> walbust;
  std::string prefix;
};

TEST(DjangoCompat, KeysMatchDjangoByteForByte) {
  const std::vector<json> make_key_inputs = {
      {{"prefix", ""}, {"version", 1}, {"key", "post_detail_42"}},
      {{"prefix", "blog"}, {"version", 1}, {"key", "home_page_posts"}},
      {{"prefix", "blog"}, {"version", 7}, {"key", "with space and \u00e9\u4e2d"}},
      {{"prefix", "pre:fix"}, {"version", -2}, {"key", "a:b*c"}},
  };
  const std::vector<FragmentInput> fragments = {
      {"footer", json::array(), {}, ""},
      {"sidebar", json::array({5}), {"5"}, "blog"},
      {"featured", json::array({7, true}), {"7", "True"}, "blog"},
      {"flag", json::array({false, nullptr}), {"False", "None"}, ""},
      {"title",
       json::array({"Caf\u00e9 cr\u00e8me \u2615", "two words"}),
       {"Caf\u00e9 cr\u00e8me \u2615", "two words"},
       "x"},
      {"price", json::array({12.5, -3, 0}), {"12.5", "-3", "0"}, ""},
      {"multi line", json::array({"a\nb", "colon:value", ""}), {"a\nb", "colon:value", ""}, ""},
  };

  json data = {{"make_key", make_key_inputs}, {"fragment", json::array()}};
  for (const auto& f : fragments) {
    data["fragment"].push_back({{"name", f.name}, {"python", f.python}, {"prefix", f.prefix}});
  }
  const auto dir = std::filesystem::temp_directory_path() /
                   ("walbust_django_compat_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "keys.py") << kScript;
    std::ofstream(dir / "input.json") << data.dump();
  }
  const std::string output = run("/usr/bin/python3 " + (dir / "keys.py").string() + " " +
                                 (dir / "input.json").string() + " 2>&1");
  std::filesystem::remove_all(dir);
  json django;
  try {
    django = json::parse(output);
  } catch (const json::exception&) {
    FAIL() << "could not compute keys with /usr/bin/python3 and Django (install python3-django): "
           << output;
  }

  ASSERT_EQ(django["make_key"].size(), make_key_inputs.size());
  for (std::size_t i = 0; i < make_key_inputs.size(); ++i) {
    const auto& in = make_key_inputs[i];
    EXPECT_EQ(django_make_key(in["prefix"].get<std::string>(), in["version"].get<long long>(),
                              in["key"].get<std::string>()),
              django["make_key"][i].get<std::string>());
  }
  ASSERT_EQ(django["fragment"].size(), fragments.size());
  for (std::size_t i = 0; i < fragments.size(); ++i) {
    const auto& f = fragments[i];
    const std::string key = django_fragment_key(f.name, f.walbust);
    EXPECT_EQ(key, django["fragment"][i].get<std::string>()) << f.name;
    EXPECT_EQ(django_make_key(f.prefix, 1, key), django["fragment_cached"][i].get<std::string>());
  }
}

}  // namespace
}  // namespace walbust
