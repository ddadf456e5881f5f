// HostResolver turns a conninfo's host names into libpq keywords without blocking: what
// needs no lookup is left alone, names become one host entry per address, lists keep
// their order and per-host ports, and a name that does not resolve is an error naming it.
#include "walbust/io/host_resolver.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>

namespace walbust {
namespace {

std::map<std::string, std::string> resolve(const std::string& conninfo,
                                           std::string* error = nullptr) {
  HostResolver resolver(conninfo);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!resolver.done()) {
    if (std::chrono::steady_clock::now() > give_up) {
      ADD_FAILURE() << "the lookup for " << conninfo << " never ended";
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (error != nullptr) *error = resolver.error();
  return {resolver.params().begin(), resolver.params().end()};
}

TEST(HostResolver, AddressesSocketDirectoriesAndChosenHostaddrsNeedNoLookup) {
  for (const char* conninfo :
       {"host=127.0.0.1 port=5432 dbname=x", "host=::1", "host=/var/run/postgresql", "dbname=x",
        "host=db.example hostaddr=10.0.0.1", "postgresql://127.0.0.1:5433/x"}) {
    HostResolver resolver(conninfo);
    EXPECT_TRUE(resolver.done()) << conninfo;
    EXPECT_TRUE(resolver.params().empty()) << conninfo;
    EXPECT_EQ(resolver.error(), "") << conninfo;
  }
}

TEST(HostResolver, ANameBecomesOneHostEntryPerAddressWithItsPort) {
  auto params = resolve("host=localhost port=5433 dbname=x");
  ASSERT_EQ(params.count("hostaddr"), 1U);
  EXPECT_NE(params["hostaddr"].find("127.0.0.1"), std::string::npos) << params["hostaddr"];
  const auto entries = std::count(params["hostaddr"].begin(), params["hostaddr"].end(), ',') + 1;
  std::string hosts = "localhost", ports = "5433";
  for (int i = 1; i < entries; ++i) {
    hosts += ",localhost";
    ports += ",5433";
  }
  EXPECT_EQ(params["host"], hosts);
  EXPECT_EQ(params["port"], ports);
}

TEST(HostResolver, AListKeepsItsOrderAndItsPerHostPorts) {
  auto params = resolve("host=/tmp,localhost,127.0.0.2 port=1,2,3");
  ASSERT_EQ(params.count("host"), 1U);
  EXPECT_EQ(params["host"].rfind("/tmp,localhost", 0), 0U) << params["host"];
  EXPECT_EQ(params["host"].substr(params["host"].rfind(',')), ",127.0.0.2");
  EXPECT_EQ(params["hostaddr"].front(), ',') << "the socket directory has no address";
  EXPECT_EQ(params["hostaddr"].back(), ',') << "nor has the numeric host";
  EXPECT_EQ(params["port"].rfind("1,2", 0), 0U);
  EXPECT_EQ(params["port"].substr(params["port"].rfind(',')), ",3");
}

TEST(HostResolver, ANameThatDoesNotResolveIsAnErrorNamingIt) {
  std::string error;
  const auto params = resolve("host=walbust-no-such-host.invalid", &error);
  EXPECT_TRUE(params.empty());
  EXPECT_NE(error.find("walbust-no-such-host.invalid"), std::string::npos) << error;
}

TEST(HostResolver, AResolverAbandonedMidLookupIsSafe) {
  for (int i = 0; i < 50; ++i) HostResolver resolver("host=localhost");
  SUCCEED();
}

}  // namespace
}  // namespace walbust
