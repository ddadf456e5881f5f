#include "walbust/core/message_text.h"

namespace walbust {

std::string one_line(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  bool pending_break = false;
  for (const char c : message) {
    if (c == '\n' || c == '\r') {
      pending_break = true;
      continue;
    }
    if (pending_break) {
      if (c == '\t' || c == ' ') continue;
      if (!out.empty()) out += "; ";
      pending_break = false;
    }
    out += c;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
  return out;
}

}  // namespace walbust
