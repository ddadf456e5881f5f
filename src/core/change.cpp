#include "walbust/core/change.h"

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

std::optional<Op> parse_op(std::string_view name) {
  for (Op op : {Op::Insert, Op::Update, Op::Delete, Op::Truncate}) {
    if (op_name(op) == name) return op;
  }
  return std::nullopt;
}

int Relation::column_index(std::string_view column) const {
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i].name == column) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace walbust
