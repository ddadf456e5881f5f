#include "walbust/io/config.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "walbust/core/duration.h"
#include "walbust/core/yaml_section.h"

namespace walbust {
namespace {

namespace fs = std::filesystem;

// Config sections are read with the same walker as rules and test-case files.
using Section = YamlSection;

void load_replicas(const std::string& path, const YAML::Node& node, ReplicaSettings& out,
                   Diagnostics& diags) {
  if (!node.IsDefined() || node.IsNull()) return;
  Section replicas(path, node, "replicas", diags);
  replicas.allow_only({"dsns", "poll_interval", "grace", "max_wait"});
  const YAML::Node dsns = replicas.get("dsns");
  if (replicas.present() && (!dsns.IsDefined() || !dsns.IsSequence() || dsns.size() == 0)) {
    diags.add(path, dsns.IsDefined() ? dsns : node,
              "replicas.dsns must be a non-empty list of conninfo strings");
  } else if (replicas.present()) {
    for (const auto& d : dsns) {
      if (!d.IsScalar() || d.Scalar().empty()) {
        diags.add(path, d, "replicas.dsns entries must be libpq conninfo strings or URIs");
      } else {
        out.dsns.push_back(d.Scalar());
      }
    }
    if (out.dsns.size() > 32) diags.add(path, dsns, "at most 32 replicas");
  }
  replicas.duration("poll_interval", out.poll_interval, std::chrono::milliseconds{1});
  replicas.duration("grace", out.grace);
  replicas.duration("max_wait", out.max_wait, std::chrono::milliseconds{1});
  if (out.max_wait < out.grace) {
    diags.add(path, replicas.get("max_wait").IsDefined() ? replicas.get("max_wait") : node,
              "replicas.max_wait must be at least replicas.grace");
  }
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

// An explicit password file wins; otherwise systemd's LoadCredential= directory.
std::string resolve_password_file(const std::string& configured, const char* credential) {
  if (!configured.empty()) return configured;
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') return "";
  const std::string candidate = std::string(dir) + "/" + credential;
  std::error_code ec;
  return fs::exists(candidate, ec) ? candidate : "";
}

// host:port entries (cluster seeds, sentinels).
void load_node_list(const Section& s, const YAML::Node& nodes, const std::string& where,
                    std::vector<std::string>& out) {
  if (!nodes.IsDefined() || nodes.IsNull()) return;
  if (!nodes.IsSequence()) {
    s.error(nodes, where + " must be a list of host:port");
    return;
  }
  for (const auto& n : nodes) {
    const std::string v = n.IsScalar() ? n.Scalar() : "";
    const auto colon = v.rfind(':');
    const std::string port = colon == std::string::npos ? "" : v.substr(colon + 1);
    const bool numeric =
        !port.empty() && port.size() <= 5 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        std::stoi(port) >= 1 && std::stoi(port) <= 65535;
    if (colon == std::string::npos || colon == 0 || !numeric) {
      s.error(n, where + " entries must be host:port with a port from 1 to 65535");
    } else {
      out.push_back(v);
    }
  }
}

// A file the TLS setup will read: it must be readable, and a private key not by others.
void check_tls_file(const Section& s, const std::string& key, const std::string& path, bool secret,
                    Diagnostics& diags, const std::string& file) {
  if (path.empty()) return;
  const std::string problem = secret ? key_file_problem(path)
                              : ::access(path.c_str(), R_OK) != 0
                                  ? std::string("cannot read it: ") + std::strerror(errno)
                                  : "";
  if (!problem.empty()) diags.add(file, s.get(key), s.where(key) + " " + path + ": " + problem);
}

void load_tls(const std::string& file, const YAML::Node& node, const std::string& name,
              RedisTlsSettings& out, Diagnostics& diags) {
  Section t(file, node, name + ".tls", diags);
  if (!t.present()) return;
  t.allow_only({"ca_file", "cert_file", "key_file", "server_name", "verify"});
  out.enabled = true;
  t.string("ca_file", out.ca_file);
  t.string("cert_file", out.cert_file);
  t.string("key_file", out.key_file);
  t.string("server_name", out.server_name);
  t.boolean("verify", out.verify);
  check_tls_file(t, "ca_file", out.ca_file, false, diags, file);
  check_tls_file(t, "cert_file", out.cert_file, false, diags, file);
  check_tls_file(t, "key_file", out.key_file, true, diags, file);
  if (out.cert_file.empty() != out.key_file.empty()) {
    t.error(node,
            name + ".tls: cert_file and key_file go together (a client certificate needs its key)");
  }
}

void load_sentinel(const std::string& file, const YAML::Node& node, const std::string& name,
                   SentinelSettings& out, Diagnostics& diags) {
  Section t(file, node, name + ".sentinel", diags);
  if (!t.present()) return;
  t.allow_only({"master", "nodes", "password_file"});
  t.string("master", out.master);
  t.string("password_file", out.password_file);
  load_node_list(t, t.get("nodes"), name + ".sentinel.nodes", out.nodes);
  if (out.master.empty())
    t.error(node, name + ".sentinel.master must name the master the sentinels monitor");
  if (out.nodes.empty())
    t.error(node, name + ".sentinel.nodes must list the sentinels (host:port)");
}

// A section has one of url, cluster + nodes, or sentinel (a cluster may keep a url for
// its credentials); TLS settings must fit the topology.
void check_redis_shape(const Section& s, const YAML::Node& node, const std::string& name,
                       const RedisSettings& out) {
  const YAML::Node url = s.get("url");
  const bool sentinel = s.get("sentinel").IsDefined();
  if (sentinel && url.IsDefined()) s.error(url, name + ": use url or sentinel, not both");
  if (sentinel && (out.cluster || s.get("nodes").IsDefined())) {
    s.error(s.get("sentinel"), name + ": use cluster/nodes or sentinel, not both");
  }
  if (s.get("db").IsDefined() && !sentinel) {
    s.error(s.get("db"),
            name + ".db is only used with sentinel (elsewhere the url carries the database)");
  }
  const YAML::Node tls = s.get("tls");
  if (tls.IsDefined() && url.IsScalar()) {
    const std::string& u = url.Scalar();
    if (u.rfind("redis://", 0) == 0 || u.rfind("valkey://", 0) == 0) {
      s.error(tls, name + ": tls: with a plain " + u.substr(0, u.find(':')) + ":// url; say " +
                       u.substr(0, u.find(':')) + "s://");
    } else if (u.rfind("unix://", 0) == 0) {
      s.error(tls, name + ": tls: does not apply to a unix socket");
    }
  }
  if (!out.tls.server_name.empty() && (out.cluster || sentinel)) {
    s.error(tls,
            name +
                ".tls.server_name would verify every node against one name; each cluster node and "
                "sentinel is verified against the name it is reached by");
  }
  (void)node;
}

void load_redis(const std::string& file, const YAML::Node& node, const std::string& name,
                RedisSettings& out, Diagnostics& diags, bool allow_cluster) {
  Section s(file, node, name, diags);
  if (allow_cluster) {
    s.allow_only({"url", "password_file", "delete_command", "timeout", "cluster", "nodes", "tls",
                  "wait", "sentinel", "db"});
  } else {
    s.allow_only(
        {"url", "password_file", "delete_command", "timeout", "tls", "wait", "sentinel", "db"});
  }
  s.string("url", out.url);
  s.string("password_file", out.password_file);
  s.choice("delete_command", out.delete_command, {"unlink", "del"});
  s.duration("timeout", out.timeout, std::chrono::milliseconds{1});
  s.boolean("cluster", out.cluster);
  load_node_list(s, s.get("nodes"), name + ".nodes", out.nodes);
  if (out.cluster && out.nodes.empty())
    s.error(node, name + ": cluster: true needs nodes: [host:port, ...]");
  if (!out.cluster && !out.nodes.empty())
    s.error(s.get("nodes"), name + ".nodes is only used with cluster: true");
  load_tls(file, s.get("tls"), name, out.tls, diags);
  Section wait(file, s.get("wait"), name + ".wait", diags);
  wait.allow_only({"replicas", "timeout"});
  std::size_t replicas = 0;
  wait.size("replicas", replicas, 0, 100);
  out.wait.replicas = static_cast<int>(replicas);
  wait.duration("timeout", out.wait.timeout, std::chrono::milliseconds{1});
  load_sentinel(file, s.get("sentinel"), name, out.sentinel, diags);
  std::size_t db = 0;
  s.size("db", db, 0, 1 << 20);
  out.db = static_cast<int>(db);
  check_redis_shape(s, node, name, out);
}

void finish_redis(const std::string& file, const YAML::Node& node, RedisSettings& r,
                  Diagnostics& diags) {
  std::string error;
  auto ep = parse_redis_url(r.url, error);
  if (!ep) {
    diags.add(file, node, "redis url: " + error);
    return;
  }
  r.endpoint = *ep;
  if (ep->tls) r.tls.enabled = true;
  if (!r.sentinel.master.empty()) r.endpoint.db = r.db;
  r.password_file = resolve_password_file(r.password_file, "redis-password");
}

// The file as a YAML mapping; nullopt (with a diagnostic) when unreadable, invalid or no mapping.
std::optional<YAML::Node> parse_config_file(const std::string& path, Diagnostics& diags) {
  const auto text = read_text_file(path, diags);
  if (!text) return std::nullopt;
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::ParserException& e) {
    diags.add(path, e.mark.line + 1, e.mark.column + 1, "invalid YAML: " + e.msg);
    return std::nullopt;
  }
  if (!root.IsMap()) {
    diags.add(path, root, "the configuration must be a mapping (postgres:, redis:, rules:, ...)");
    return std::nullopt;
  }
  return root;
}

// `root` locates errors about a missing section.
void load_postgres(const std::string& path, const YAML::Node& root, const Section& top,
                   PostgresSettings& out, Diagnostics& diags) {
  Section pg(path, top.get("postgres"), "postgres", diags);
  pg.allow_only({"dsn", "password_file", "slot", "publication", "create_slot", "status_interval"});
  pg.string("dsn", out.dsn);
  pg.string("password_file", out.password_file);
  pg.string("slot", out.slot);
  pg.string("publication", out.publication);
  pg.boolean("create_slot", out.create_slot);
  pg.duration("status_interval", out.status_interval, std::chrono::milliseconds{100});
  if (!top.get("postgres").IsDefined()) {
    diags.add(path, root, "missing required section 'postgres' (at least postgres.dsn)");
  }
  // Slot names: lower-case letters, digits and underscores, as PostgreSQL requires.
  const auto& slot = out.slot;
  if (slot.empty() || slot.size() > 63 || !std::all_of(slot.begin(), slot.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
      })) {
    diags.add(path, pg.get("slot"), "postgres.slot must be 1-63 characters of a-z, 0-9 and _");
  }
  if (out.publication.empty())
    diags.add(path, pg.get("publication"), "postgres.publication must not be empty");
}

// targets: NAME: {redis section}, one target per entry, at most 64 (one bit each).
void load_named_targets(const std::string& path, const YAML::Node& targets, Config& config,
                        Diagnostics& diags) {
  if (!targets.IsMap() || targets.size() == 0) {
    diags.add(path, targets,
              "targets must be a non-empty mapping from a target name to a Redis section");
    return;
  }
  for (const auto& kv : targets) {
    const std::string name = kv.first.Scalar();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
        })) {
      diags.add(path, kv.first, "target names use letters, digits, '_' and '-'");
    }
    RedisTarget t{name, {}};
    load_redis(path, kv.second, "targets." + name, t.settings, diags, /*allow_cluster=*/true);
    config.targets.push_back(std::move(t));
  }
  if (config.targets.size() > 64) diags.add(path, targets, "at most 64 targets");
  config.redis_configured = true;
}

// A redis: section is the one target "default"; neither section: "default" with defaults.
void load_targets(const std::string& path, const Section& top, Config& config, Diagnostics& diags) {
  const YAML::Node redis = top.get("redis");
  const YAML::Node targets = top.get("targets");
  if (redis.IsDefined() && targets.IsDefined()) {
    diags.add(path, targets, "use either redis: or targets:, not both");
  }
  if (redis.IsDefined() && !redis.IsNull()) {
    RedisTarget t{"default", {}};
    load_redis(path, redis, "redis", t.settings, diags, /*allow_cluster=*/false);
    config.targets.push_back(std::move(t));
    config.redis_configured = true;
  } else if (targets.IsDefined() && !targets.IsNull()) {
    load_named_targets(path, targets, config, diags);
  } else {
    config.targets.push_back(RedisTarget{"default", {}});
  }
}

void load_rule_patterns(const std::string& path, const YAML::Node& root, const Section& top,
                        std::vector<std::string>& out, Diagnostics& diags) {
  const YAML::Node rules = top.get("rules");
  if (!rules.IsDefined() || rules.IsNull()) {
    diags.add(path, root, "missing required key 'rules' (a list of rules files or globs)");
  } else if (rules.IsScalar()) {
    out.push_back(rules.Scalar());
  } else if (rules.IsSequence()) {
    for (const auto& r : rules) {
      if (!r.IsScalar() || r.Scalar().empty()) {
        diags.add(path, r, "rules entries must be file names or globs");
      } else {
        out.push_back(r.Scalar());
      }
    }
  } else {
    diags.add(path, rules, "rules must be a list of files or globs");
  }
}

// batch, state_dir, on_gap, metrics, replicas and log.
void load_runtime_sections(const std::string& path, const Section& top, Config& config,
                           Diagnostics& diags) {
  Section batch(path, top.get("batch"), "batch", diags);
  batch.allow_only({"max_keys", "max_delay"});
  batch.size("max_keys", config.batch.max_keys, 1, 1000000);
  batch.duration("max_delay", config.batch.max_delay);

  top.string("state_dir", config.state_dir);
  top.choice("on_gap", config.on_gap, {"fail", "flush_rules", "flushdb"});

  Section metrics(path, top.get("metrics"), "metrics", diags);
  metrics.allow_only({"listen"});
  metrics.string("listen", config.metrics_listen);

  load_replicas(path, top.get("replicas"), config.replicas, diags);

  Section log(path, top.get("log"), "log", diags);
  log.allow_only({"level", "format"});
  log.choice("level", config.log.level, {"trace", "debug", "info", "warn", "error"});
  log.choice("format", config.log.format, {"auto", "text", "json"});
}

// Environment overrides (README "Configuration reference") win over the file; then every
// target's url is parsed and the paths the file left out are resolved.
void apply_environment_and_defaults(const std::string& path, const YAML::Node& root,
                                    const Section& top, Config& config, Diagnostics& diags) {
  const YAML::Node redis = top.get("redis");
  const YAML::Node targets = top.get("targets");
  config.postgres.dsn = env_or("WALBUST_PG_DSN", config.postgres.dsn);
  if (const char* url = std::getenv("WALBUST_REDIS_URL"); url != nullptr && *url != '\0') {
    config.targets.front().settings.url = url;
    config.redis_configured = true;
  }
  for (auto& t : config.targets) {
    const YAML::Node where = redis.IsDefined()                        ? redis
                             : targets.IsDefined() && targets.IsMap() ? targets[t.name]
                                                                      : root;
    finish_redis(path, where, t.settings, diags);
  }
  config.postgres.password_file =
      resolve_password_file(config.postgres.password_file, "pg-password");
  if (config.state_dir.empty()) config.state_dir = env_or("STATE_DIRECTORY", ".");
  // systemd may pass several state directories separated by ':'; the first is ours.
  if (auto colon = config.state_dir.find(':'); colon != std::string::npos)
    config.state_dir.resize(colon);
}

}  // namespace

std::string default_config_path() { return env_or("WALBUST_CONFIG", "/etc/walbust/walbust.yaml"); }

std::optional<std::string> read_text_file(const std::string& path, Diagnostics& diags) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    diags.add(path, 0, 0, "is a directory, not a file");
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diags.add(path, 0, 0, std::string("cannot open: ") + std::strerror(errno));
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::optional<Config> load_config(const std::string& path, Diagnostics& diags) {
  const std::size_t errors_before = diags.size();
  const auto root = parse_config_file(path, diags);
  if (!root) return std::nullopt;
  Config config;
  config.path = path;
  Section top(path, *root, "configuration", diags);
  top.allow_only({"postgres", "redis", "targets", "rules", "batch", "state_dir", "on_gap",
                  "metrics", "log", "replicas"});
  load_postgres(path, *root, top, config.postgres, diags);
  load_targets(path, top, config, diags);
  load_rule_patterns(path, *root, top, config.rules, diags);
  load_runtime_sections(path, top, config, diags);
  apply_environment_and_defaults(path, *root, top, config, diags);
  if (diags.size() != errors_before) return std::nullopt;
  return config;
}

void check_rule_targets(const Config& config, const RuleSet& rules, Diagnostics& diags) {
  for (std::uint32_t i = 0; i < rules.size(); ++i) {
    const RuleInfo& r = rules.rule(i);
    for (const auto& name : r.targets) {
      const bool known = std::any_of(config.targets.begin(), config.targets.end(),
                                     [&](const RedisTarget& t) { return t.name == name; });
      if (!known) {
        std::string list;
        for (const auto& t : config.targets) list += (list.empty() ? "" : ", ") + t.name;
        diags.add(r.file, r.line, 0,
                  "rule " + r.name + ": unknown target '" + name + "' (configured: " + list + ")");
      }
    }
  }
}

std::vector<std::string> resolve_rule_files(const Config& config, Diagnostics& diags) {
  const fs::path base = fs::path(config.path).parent_path();
  std::set<std::string> files;
  for (const auto& pattern : config.rules) {
    fs::path p(pattern);
    if (p.is_relative()) p = base / p;
    glob_t g{};
    const int rc = ::glob(p.c_str(), GLOB_NOSORT, nullptr, &g);
    if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
      diags.add(config.path, 0, 0,
                "rules: '" + pattern + "' matches no file (looked for " + p.string() + ")");
    } else if (rc != 0) {
      diags.add(config.path, 0, 0, "rules: cannot read '" + pattern + "'");
    } else {
      for (std::size_t i = 0; i < g.gl_pathc; ++i) files.insert(g.gl_pathv[i]);
    }
    globfree(&g);
  }
  return {files.begin(), files.end()};
}

RuleSet load_rules(const Config& config, Diagnostics& diags) {
  return load_rule_files(resolve_rule_files(config, diags), diags);
}

RuleSet load_rule_files(const std::vector<std::string>& files, Diagnostics& diags) {
  std::vector<RuleSource> sources;
  for (const auto& file : files) {
    if (auto text = read_text_file(file, diags))
      sources.push_back(RuleSource{file, std::move(*text)});
  }
  return RuleSet::load(sources, diags);
}

std::string read_password_file(const std::string& path) {
  if (path.empty()) return "";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("password file " + path + ": " + std::strerror(errno));
  }
  // A secret readable by every local user is a leak waiting to happen; refuse it.
  if ((st.st_mode & S_IROTH) != 0) {
    throw std::runtime_error("password file " + path + " is world-readable; run: chmod o-rwx " +
                             path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("password file " + path + ": cannot open");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
  return content;
}

}  // namespace walbust
