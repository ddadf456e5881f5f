#include "walbust/change.h"

namespace walbust {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::Insert:
      return "insert";
    case Op::Update:
      return "update";
    case Op::Delete:
      return "delete";
    case Op::Truncate:
      return "truncate";
  }
  return "unknown";
}

int Relation::column_index(std::string_view column) const {
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].name == column) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace walbust
