#include "walbust/io/state_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace walbust {
namespace {

void write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("writing " + path + ": " + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

StateStore::StateStore(std::string state_dir, std::string slot)
    : dir_(std::move(state_dir)), path_(dir_ + "/walbust-" + slot + ".state") {}

std::optional<SlotState> StateStore::load() const {
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return std::nullopt;
  std::ifstream in(path_);
  if (!in)
    throw std::runtime_error("cannot read state file " + path_ + ": " + std::strerror(errno));
  try {
    const auto j = nlohmann::json::parse(in);
    SlotState s;
    s.system_identifier = j.at("system_identifier").get<std::string>();
    s.database = j.value("database", "");
    s.slot = j.at("slot").get<std::string>();
    const auto lsn = parse_lsn(j.at("acknowledged_lsn").get<std::string>());
    if (!lsn) throw std::runtime_error("bad acknowledged_lsn");
    s.acknowledged_lsn = *lsn;
    return s;
  } catch (const std::exception& e) {
    throw std::runtime_error("state file " + path_ + " is damaged (" + e.what() +
                             "); inspect it, then remove it to start as on a new installation");
  }
}

void StateStore::save(const SlotState& state) const {
  const nlohmann::json j = {{"system_identifier", state.system_identifier},
                            {"database", state.database},
                            {"slot", state.slot},
                            {"acknowledged_lsn", format_lsn(state.acknowledged_lsn)}};
  const std::string tmp = path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::runtime_error("cannot write state file " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, j.dump(2) + "\n", tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("fsync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path_ + ": " + std::strerror(errno));
  }
  // The rename is durable only once the directory entry is.
  const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

void StateStore::remove() const {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

}  // namespace walbust
