#pragma once
// Loads pgoutput messages captured from a real PostgreSQL server (tests/unit/data/*.txt:
// "LSN XID HEX" per line, '#' comments).
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "walbust/core/lsn.h"

namespace walbust::testing {

struct CapturedMessage {
  Lsn lsn = 0;
  std::uint32_t xid = 0;
  std::string data;
};

inline std::vector<CapturedMessage> load_captured(const std::string& name) {
  const std::string path = std::string(WALBUST_SOURCE_DIR) + "/tests/unit/data/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<CapturedMessage> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string lsn, hex;
    CapturedMessage m;
    if (!(fields >> lsn >> m.xid >> hex) || !parse_lsn(lsn) || hex.size() % 2 != 0) {
      throw std::runtime_error("bad line in " + path + ": " + line);
    }
    m.lsn = *parse_lsn(lsn);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
      m.data.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace walbust::testing
