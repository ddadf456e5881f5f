// libFuzzer target for the wire side: pgoutput decoding alone, and the whole path a
// replication payload takes (decode, relation cache, K/O tuples, rule matching, key
// rendering) through ChangeStream into RuleSet::plan.
//
// Input: the first byte selects the mode, the rest is the payload.
//   bit 0 clear  the rest is one XLogData payload for pgoutput::decode.
//   bit 0 set    the rest is a sequence of messages, each a 2-byte big-endian length and
//                that many bytes (a length past the end takes what is left), fed in order
//                to one ChangeStream. bit 1 clear stops at the first StreamError, as the
//                daemon does; bit 1 set keeps feeding, so the state left behind by an error
//                is exercised too.
// Only pgoutput::DecodeError and StreamError are part of the contract; any other
// exception escapes and libFuzzer reports it as a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/change_stream.h"
#include "walbust/core/pgoutput.h"
#include "walbust/core/rules.h"

namespace {

// Rules over the tables of tests/unit/data/pg15_pgoutput_stream.sql, so the captured
// seeds reach every planning branch: images, filters, django keys, fragments, patterns,
// changed / ignore_changes / when, NULL literals, truncate.
constexpr std::string_view kRules = R"(version: 1
rules:
  - name: post
    table: blog_post
    ignore_changes: [body]
    delete:
      - "post_{id}"
      - "category_{category_id}"
      - "title_{title|lower|md5}"
    delete_pattern:
      - "search:{title|upper}:*"
  - name: post-moved
    table: public.blog_post
    on: [update]
    changed: [category_id]
    delete: ["moved_{old.category_id}_{new.category_id}"]
    bump_version: ["post_version_{id}", "posts_version"]
  - name: post-slug
    table: blog_post
    on: [insert, delete]
    when: {category_id: 1}
    null: none
    delete: ["slug_{slug}_{body|python}"]
  - name: tag
    table: app.tag
    key_format: django
    django: {key_prefix: site, version: 3}
    redelete_after: 250ms
    delete: ["tag_{name}", "tag_id_{old.id}"]
    fragment:
      - name: tag_cloud
      - name: tag_box
        vary_on: ["{id}", "{name|python}"]
  - name: mood
    table: app.mood_log
    on: [insert, update, delete, truncate]
    when: {m: happy}
    delete: ["mood_{id}_{m}"]
    delete_pattern: ["mood_*_{m|upper}"]
)";

const walbust::RuleSet& rules() {
  static const walbust::RuleSet set = [] {
    walbust::Diagnostics diags;
    auto loaded = walbust::RuleSet::load({{"fuzz_pgoutput.yaml", std::string(kRules)}}, diags);
    if (!diags.empty()) {
      // A broken harness would fuzz nothing of interest: fail loudly instead.
      std::fprintf(stderr, "fuzz_pgoutput: built-in rules do not load:\n%s",
                   diags.format().c_str());
      std::abort();
    }
    return loaded;
  }();
  return set;
}

class PlanningHandler : public walbust::ChangeHandler {
 public:
  void on_begin(const walbust::TransactionBegin& /*begin*/) override {}
  void on_commit(const walbust::TransactionCommit& /*commit*/) override {}
  void on_relation(const walbust::Relation& relation) override {
    (void)rules().watches(relation.schema, relation.name);
  }
  void on_change(const walbust::Change& change) override {
    actions_.clear();
    failures_.clear();
    rules().plan(change, actions_, &failures_);
    for (const auto& action : actions_) {
      // Every action names the rule that produced it.
      if (action.rule >= rules().size()) std::abort();
      (void)rules().rule(action.rule);
    }
    for (const auto& failure : failures_) {
      if (failure.rule >= rules().size()) std::abort();
    }
  }

 private:
  std::vector<walbust::Action> actions_;
  std::vector<walbust::RenderFailure> failures_;
};

void decode_one(std::string_view payload) {
  try {
    (void)walbust::pgoutput::decode(payload, 0x153AAC8);
  } catch (const walbust::pgoutput::DecodeError&) {
  }
  (void)walbust::pgoutput::describe_message(payload, 0x153AAC8);
}

void feed_stream(std::string_view rest, bool keep_going) {
  walbust::ChangeStream stream;
  PlanningHandler handler;
  walbust::Lsn lsn = 0x153AAC8;
  while (!rest.empty()) {
    std::size_t length = static_cast<unsigned char>(rest[0]);
    if (rest.size() >= 2) {
      length = (length << 8) | static_cast<unsigned char>(rest[1]);
      rest.remove_prefix(2);
    } else {
      rest.remove_prefix(1);
    }
    const std::string_view message = rest.substr(0, length);
    rest.remove_prefix(message.size());
    try {
      stream.feed(message, lsn, handler);
    } catch (const walbust::StreamError&) {
      if (!keep_going) return;
    }
    lsn += 0x38;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((mode & 1) == 0) {
    decode_one(rest);
  } else {
    feed_stream(rest, (mode & 2) != 0);
  }
  return 0;
}
