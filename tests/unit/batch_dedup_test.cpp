#include "walbust/core/batch_dedup.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

Action make(ActionKind kind, std::string key) {
  Action a;
  a.kind = kind;
  a.key = std::move(key);
  return a;
}

std::vector<const Action*> pointers(const std::vector<Action>& actions) {
  std::vector<const Action*> out;
  for (const auto& a : actions) out.push_back(&a);
  return out;
}

TEST(DeleteDeduplicator, MarksEveryRepeatButTheFirstOccurrence) {
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "home"), make(ActionKind::Delete, "post_1"),
      make(ActionKind::Delete, "home"), make(ActionKind::Delete, "post_2"),
      make(ActionKind::Delete, "home"), make(ActionKind::Delete, "post_1"),
  };
  DeleteDeduplicator d;
  d.scan(pointers(actions));
  const std::vector<bool> expected = {false, false, true, false, true, true};
  for (std::size_t i = 0; i < actions.size(); ++i) EXPECT_EQ(d.repeated(i), expected[i]) << i;
}

TEST(DeleteDeduplicator, OnlyDeletesAreDeduplicated) {
  const std::vector<Action> actions = {
      make(ActionKind::BumpVersion, "v"), make(ActionKind::Delete, "v"),
      make(ActionKind::BumpVersion, "v"), make(ActionKind::DeletePattern, "p*"),
      make(ActionKind::Delete, "p*"),     make(ActionKind::DeletePattern, "p*"),
  };
  DeleteDeduplicator d;
  d.scan(pointers(actions));
  for (std::size_t i = 0; i < actions.size(); ++i) EXPECT_FALSE(d.repeated(i)) << i;
}

TEST(DeleteDeduplicator, BinaryKeysAndReuseAcrossBatches) {
  // Keys differing only after an embedded NUL, or by a prefix, are different keys.
  const std::vector<Action> first = {
      make(ActionKind::Delete, std::string("a\0b", 3)),
      make(ActionKind::Delete, std::string("a\0c", 3)),
      make(ActionKind::Delete, "a"),
      make(ActionKind::Delete, std::string("a\0b", 3)),
  };
  DeleteDeduplicator d;
  d.scan(pointers(first));
  EXPECT_FALSE(d.repeated(0));
  EXPECT_FALSE(d.repeated(1));
  EXPECT_FALSE(d.repeated(2));
  EXPECT_TRUE(d.repeated(3));
  const std::vector<Action> second = {make(ActionKind::Delete, "x")};
  d.scan(pointers(second));  // a smaller batch: nothing left over from the first
  EXPECT_FALSE(d.repeated(0));
}

TEST(DeleteDeduplicator, ADeleteAfterASetOfItsKeyIsNotARepeat) {
  // DEL k, SET k, DEL k: dropping the second delete would leave the SET's key behind.
  const std::vector<Action> actions = {
      make(ActionKind::Delete, "k"),          make(ActionKind::BumpVersion, "k"),
      make(ActionKind::Delete, "k"),          make(ActionKind::Delete, "k"),
      make(ActionKind::BumpVersion, "other"), make(ActionKind::Delete, "k")};
  DeleteDeduplicator d;
  d.scan(pointers(actions));
  EXPECT_FALSE(d.repeated(0));
  EXPECT_FALSE(d.repeated(2)) << "the SET of k in between makes it a new delete";
  EXPECT_TRUE(d.repeated(3));
  EXPECT_TRUE(d.repeated(5)) << "a SET of another key changes nothing for k";
}

}  // namespace
}  // namespace walbust
