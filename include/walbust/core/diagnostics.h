#pragma once
// Problems found in configuration, rules or test-case files, reported all at once as
// "FILE:LINE:COLUMN: error: MESSAGE" (1-based line and column).
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace walbust {

struct Diagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string message;

  // "FILE:LINE:COLUMN: error: MESSAGE" (or "FILE: error: MESSAGE" without a position).
  [[nodiscard]] std::string format() const;
};

class Diagnostics {
 public:
  void add(std::string file, int line, int column, std::string message);
  // Position taken from a yaml-cpp node's mark (0-based there, 1-based here).
  void add(const std::string& file, const YAML::Node& node, std::string message);
  void merge(const Diagnostics& other);

  [[nodiscard]] bool empty() const { return items_.empty(); }
  [[nodiscard]] std::size_t size() const { return items_.size(); }
  [[nodiscard]] const std::vector<Diagnostic>& items() const { return items_; }
  // All diagnostics, one formatted line each, in the order they were found.
  [[nodiscard]] std::string format() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace walbust
