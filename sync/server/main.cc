// dala-server: the organisation's sync server. Stores sealed reports it cannot read, in an append-only log it signs.
// Exit codes: 0 success, 1 error, 2 usage or invalid input, 4 no such data directory or device, or nothing
// to export (docs/cli.md).
#include <arpa/inet.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/failpoint.h"
#include "crypto/crypto.h"
#include "format/invite.h"
#include "format/organisation.h"
#include "protocol/tls_pin.h"
#include "server/http_server.h"
#include "server/server_backup.h"
#include "server/server_core.h"
#include "server/tsa_client.h"

namespace {

using dala::Code;
using dala::Status;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitNotFound = 4;

struct UsageError {
  std::string message;
};
struct Failure {
  Status st;
};
void Check(const Status& st) {
  if (!st.ok()) throw Failure{st};
}
template <typename T>
T Check(dala::Result<T> r) {
  if (!r.ok()) throw Failure{r.status()};
  return std::move(r).value();
}

void PrintJson(const nlohmann::json& j) {
  std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

// "SQLCipher 3.4.1 (SQLite 3.15.2)", measured in this process: PRAGMA cipher_version on a memory database.
std::string SqlcipherVersion() {
  std::string cipher;
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA cipher_version", -1, &st, nullptr) == SQLITE_OK) {
      if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr)
        cipher = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      sqlite3_finalize(st);
    }
  }
  sqlite3_close(db);
  return (cipher.empty() ? std::string("SQLCipher: codec NOT active") : "SQLCipher " + cipher) + " (SQLite " +
         sqlite3_libversion() + ")";
}

std::string VersionText() {
  return std::string("dala-server ") + DALA_VERSION_STRING + "\n" + SqlcipherVersion() + "\nlibsodium " +
         sodium_version_string();
}

uint64_t Number(const std::string& s, const char* what) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 12)
    throw UsageError{std::string(what) + " must be a whole number"};
  return std::stoull(s);
}

dala::crypto::PublicKey Key(const std::string& hex, const char* what) {
  dala::crypto::PublicKey k;
  if (!dala::encoding::FromHex(hex, k)) throw UsageError{std::string(what) + " must be 64 hexadecimal characters"};
  return k;
}

// Everything the command line can say; each subcommand binds what it takes.
struct Options {
  std::string data, config, listen = "127.0.0.1:8443", tls_cert, tls_key, out, organisation, device, statement,
      tsa_url, label, invite, metrics_listen, database, blobs;
  int threads = 2, header_timeout = 10, body_timeout = 60, tsa_interval = 60, node_check_interval = 60;
  uint64_t max_connections = 1024, max_body_mib = 16, max_buffered_mib = 256, max_batch = 256, max_storage_mib = 0,
           max_envelope_mib = 8, since = 0;
  bool quiet = false, json = false, log_client_addresses = false, include_key = false;
  std::string from, key;
  std::vector<std::string> trusted_proxies;
};

using Handlers = std::map<const CLI::App*, int (*)(const Options&)>;
int g_argc = 0;
char** g_argv = nullptr;
Options ReadRunOptions();

std::unique_ptr<dala::server::ServerCore> OpenCore(const Options& o, dala::server::ServerLimits limits = {}) {
  return Check(dala::server::ServerCore::Open(o.data, limits));
}

// `run --config FILE`: TOML or INI (CLI11's reader), keys named like run's long options, at the top or in a
// [run] section. The command line wins over the file; an unknown key is refused.
// The line of `file` that sets `name` (in section `section`, "" for the top), for error messages; 0 if
// not found. CLI11's reader does not keep line numbers.
int LineOf(const std::string& file, const std::string& section, const std::string& name) {
  std::ifstream in(file);
  std::string line, current;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    std::string_view l(line);
    l.remove_prefix(start);
    if (l.front() == '[') {
      const auto end = l.find(']');
      current = std::string(l.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1));
      if (current == section && name.empty()) return n;
      continue;
    }
    if (current != section || l.substr(0, name.size()) != name) continue;
    l.remove_prefix(name.size());
    const auto eq = l.find_first_not_of(" \t");
    if (eq != std::string_view::npos && (l[eq] == '=' || l[eq] == ':')) return n;
  }
  return 0;
}

void ApplyConfig(CLI::App& run, const std::string& file) {
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(file);
  } catch (const CLI::Error& e) {
    throw UsageError{"cannot read the config file '" + file + "': " + e.what()};
  }
  auto where = [&](const std::string& section, const std::string& name) {
    const int line = LineOf(file, section, name);
    return "config file '" + file + "'" + (line > 0 ? ", line " + std::to_string(line) : std::string()) + ": ";
  };
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    const std::string section = item.parents.empty() ? "" : item.parents[0];
    if (!item.parents.empty() && !(item.parents.size() == 1 && item.parents[0] == "run"))
      throw UsageError{where(section, "") + "unknown section [" + item.parents[0] + "] (only [run])"};
    CLI::Option* opt = run.get_option_no_throw("--" + item.name);
    if (opt == nullptr || !opt->get_configurable() || item.name == "config")
      throw UsageError{where(section, item.name) + "unknown setting '" + item.name + "'"};
    if (opt->count() > 0) continue;  // given on the command line
    try {
      opt->add_result(item.inputs);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      throw UsageError{where(section, item.name) + e.what()};
    }
  }
}

// HOST:PORT or [IPv6]:PORT, of the option `what`, into o.host and o.port.
void ParseListen(const std::string& value, const std::string& what, dala::server::HttpOptions& o) {
  auto colon = value.rfind(':');
  if (colon == std::string::npos) throw UsageError{what + " is HOST:PORT"};
  o.host = value.substr(0, colon);
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
  uint64_t port = Number(value.substr(colon + 1), ("the port of " + what).c_str());
  if (port > 65535) throw UsageError{"the port of " + what + " must be at most 65535"};
  o.port = static_cast<uint16_t>(port);
}

// --metrics-listen: a second, plain HTTP listener that serves GET /metrics alone, for a Prometheus on
// another host. Small: one thread, a few connections, no request bodies worth the name.
dala::server::HttpOptions MetricsListenerOptions(const Options& a) {
  dala::server::HttpOptions m;
  ParseListen(a.metrics_listen, "--metrics-listen", m);
  m.metrics_only = true;
  m.threads = 1;
  m.max_connections = 16;
  m.max_body_bytes = 64u << 10;
  m.header_timeout_s = a.header_timeout;
  m.body_timeout_s = a.header_timeout;
  m.log_requests = !a.quiet;
  return m;
}

// The main listener's settings from `run`'s options.
dala::server::HttpOptions HttpOptionsFor(const Options& a) {
  dala::server::HttpOptions o;
  ParseListen(a.listen, "--listen", o);
  if (a.tls_cert.empty() != a.tls_key.empty()) throw UsageError{"HTTPS needs both --tls-cert and --tls-key"};
  o.tls_cert = a.tls_cert;
  o.tls_key = a.tls_key;
  o.threads = a.threads;
  o.max_connections = a.max_connections;
  o.max_body_bytes = a.max_body_mib << 20;
  o.max_buffered_bytes = a.max_buffered_mib << 20;
  o.header_timeout_s = a.header_timeout;
  o.body_timeout_s = a.body_timeout;
  o.log_requests = !a.quiet;
  o.log_client_addresses = a.log_client_addresses;
  o.trusted_proxies = a.trusted_proxies;
  if (!a.trusted_proxies.empty() && !a.log_client_addresses)
    throw UsageError{"--trusted-proxy only matters with --log-client-addresses (client addresses are not logged)"};
  return o;
}

// The settings a reload does not change (they take a restart), by their option names, that differ.
std::vector<std::string> RestartOnlyChanges(const Options& was, const Options& now) {
  std::vector<std::string> out;
  auto differ = [&](const char* name, bool changed) {
    if (changed) out.emplace_back(name);
  };
  differ("data", was.data != now.data);
  differ("listen", was.listen != now.listen);
  differ("threads", was.threads != now.threads);
  differ("max-body-mib", was.max_body_mib != now.max_body_mib);
  differ("max-buffered-mib", was.max_buffered_mib != now.max_buffered_mib);
  differ("max-batch", was.max_batch != now.max_batch);
  differ("max-envelope-mib", was.max_envelope_mib != now.max_envelope_mib);
  differ("max-storage-mib", was.max_storage_mib != now.max_storage_mib);
  differ("metrics-listen", was.metrics_listen != now.metrics_listen);
  differ("tsa-url", was.tsa_url != now.tsa_url);
  differ("tsa-interval", was.tsa_interval != now.tsa_interval);
  differ("node-check-interval", was.node_check_interval != now.node_check_interval);
  differ("tls-cert and tls-key (HTTPS on or off)", was.tls_cert.empty() != now.tls_cert.empty());
  return out;
}

// systemd's service manager (Type=notify): readiness, reloads, stopping, status. Nothing when not started
// by it (NOTIFY_SOCKET unset).
void Notify(const std::string& state) { (void)sd_notify(0, state.c_str()); }

std::string MonotonicUsec() {
  return "MONOTONIC_USEC=" + std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                                std::chrono::steady_clock::now().time_since_epoch()).count());
}

int Run(const Options& a) {
  dala::server::HttpOptions o = HttpOptionsFor(a);
  dala::server::ServerLimits limits;
  limits.max_body_bytes = o.max_body_bytes;
  limits.max_batch = a.max_batch;
  limits.max_envelope_bytes = a.max_envelope_mib << 20;
  limits.max_storage_bytes = a.max_storage_mib << 20;

  // Signals are taken by one thread with sigwait; every other thread has them blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Tests only: slow the server down at its failpoints so a SIGKILL lands inside a push, end it at once (as
  // a SIGKILL would) at the failpoint named, or hold the thread that reaches one failpoint for a while
  // (NAME:MS; the watchdog test stalls the I/O threads with it).
  if (const char* d = std::getenv("DALA_TEST_FAILPOINT_DELAY_MS")) {
    static int delay_ms = std::atoi(d);
    dala::testing::SetFailpointHook([](const char* name) {
      if (std::string_view(name) != "server.io.route")  // the steps of a push or an upload, not every request
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    });
  } else if (const char* at = std::getenv("DALA_TEST_FAILPOINT_EXIT")) {
    static std::string exit_at = at;
    dala::testing::SetFailpointHook([](const char* name) {
      if (exit_at == name) ::_exit(99);
    });
  } else if (const char* stall = std::getenv("DALA_TEST_FAILPOINT_STALL")) {
    static std::string stall_at = stall;
    static int stall_ms = 0;
    if (auto colon = stall_at.rfind(':'); colon != std::string::npos) {
      stall_ms = std::atoi(stall_at.c_str() + colon + 1);
      stall_at.resize(colon);
    }
    dala::testing::SetFailpointHook([](const char* name) {
      if (stall_at == name) std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
    });
  }
  if (!a.tsa_url.empty()) Check(dala::server::CheckTsaUrl(a.tsa_url));
  std::optional<dala::server::HttpOptions> metrics_options;
  if (!a.metrics_listen.empty()) metrics_options = MetricsListenerOptions(a);
  auto core = OpenCore(a, limits);
  Check(core->JoinNodes(a.node_check_interval));
  dala::server::HttpServer server(*core, o);
  Check(server.Listen());
  std::unique_ptr<dala::server::HttpServer> metrics_server;
  if (metrics_options) {
    metrics_server = std::make_unique<dala::server::HttpServer>(*core, *metrics_options);
    Check(metrics_server->Listen());
  }
  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool watchdog_stop = false;
  std::printf("listening on %s:%u\n", o.host.c_str(), server.port());
  if (metrics_server) std::printf("metrics on %s:%u\n", metrics_options->host.c_str(), metrics_server->port());
  std::fflush(stdout);
  Notify("READY=1\nSTATUS=serving on " + o.host + ":" + std::to_string(server.port()));
  // SIGHUP: the command line and the config file read again; what a running server can change is changed
  // (HttpServer::Reload: a renewed TLS certificate, timeouts, logging), the rest named as taking a restart.
  // A config file or certificate that fails changes nothing: the server goes on as it was.
  Options current = a;
  auto reload = [&] {
    Notify("RELOADING=1\n" + MonotonicUsec());
    try {
      Options next = ReadRunOptions();
      Check(server.Reload(HttpOptionsFor(next)));
      if (metrics_server && next.metrics_listen == current.metrics_listen)
        Check(metrics_server->Reload(MetricsListenerOptions(next)));
      nlohmann::json restart = RestartOnlyChanges(current, next);
      dala::server::LogLine("info", "\"event\":\"reloaded\",\"restart_needed_for\":" + restart.dump());
      current = std::move(next);
    } catch (const UsageError& u) {
      dala::server::LogLine("error", "\"event\":\"reload_failed\",\"error\":" + nlohmann::json(u.message).dump());
    } catch (const Failure& f) {
      dala::server::LogLine("error",
                            "\"event\":\"reload_failed\",\"error\":" + nlohmann::json(f.st.message()).dump());
    }
    Notify("READY=1");
  };
  std::thread signals([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        reload();
        continue;
      }
      Notify("STOPPING=1");
      server.Stop();
      return;
    }
  });
  // The watchdog (WatchdogSec=): pinged at half its interval while the I/O threads answer within it; a
  // server whose event loop is stuck stops pinging and is restarted.
  std::thread watchdog;
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    watchdog = std::thread([&, period = std::chrono::microseconds(watchdog_usec / 2)] {
      std::unique_lock lock(watchdog_mu);
      while (!watchdog_cv.wait_for(lock, period, [&] { return watchdog_stop; })) {
        lock.unlock();
        if (server.Responsive(std::chrono::duration_cast<std::chrono::milliseconds>(period))) Notify("WATCHDOG=1");
        lock.lock();
      }
    });
  }
  std::thread metrics_thread;
  if (metrics_server) metrics_thread = std::thread([&] { metrics_server->Run(); });
  // Trusted time: the newest head stamped by the time-stamping authority every --tsa-interval seconds
  // when the log grew (docs/protocol.md, "Trusted time"). A TSA that fails costs that stamp only.
  std::mutex stamp_mu;
  std::condition_variable stamp_cv;
  bool stopping = false;
  std::thread stamper;
  if (!a.tsa_url.empty()) {
    stamper = std::thread([&] {
      std::unique_lock lock(stamp_mu);
      while (!stamp_cv.wait_for(lock, std::chrono::seconds(a.tsa_interval), [&] { return stopping; })) {
        lock.unlock();
        auto stamped = core->StampNewestHead([&](const std::string& q) {
          return dala::server::PostTimeStampQuery(a.tsa_url, q, 20000);
        });
        if (!stamped.ok())
          dala::server::LogLine("warn", "\"event\":\"timestamp_failed\",\"error\":" +
                                            nlohmann::json(stamped.status().message()).dump());
        lock.lock();
      }
    });
  }
  // Nodes on PostgreSQL: every --node-check-interval seconds, whether every running node still uses this
  // node's attachment store (ServerCore::CheckNodes; nothing on the embedded database).
  std::thread node_checker([&] {
    std::unique_lock lock(stamp_mu);
    while (!stamp_cv.wait_for(lock, std::chrono::seconds(a.node_check_interval), [&] { return stopping; })) {
      lock.unlock();
      if (Status st = core->CheckNodes(a.node_check_interval); !st.ok())
        dala::server::LogLine("warn", "\"event\":\"node_check_failed\",\"error\":" +
                                          nlohmann::json(st.message()).dump());
      lock.lock();
    }
  });
  server.Run();
  {
    std::lock_guard lock(stamp_mu);
    stopping = true;
  }
  stamp_cv.notify_all();
  node_checker.join();
  core->LeaveNodes();
  if (metrics_server) {  // it lives as long as the main listener
    metrics_server->Stop();
    metrics_thread.join();
  }
  if (stamper.joinable()) stamper.join();  // told to stop with the node checker
  if (watchdog.joinable()) {
    {
      std::lock_guard lock(watchdog_mu);
      watchdog_stop = true;
    }
    watchdog_cv.notify_all();
    watchdog.join();
  }
  // Wake the signal thread if Run ended for another reason.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return kExitOk;
}

// `timestamp`: the newest head stamped now (for cron, or a first stamp), with the server running or not.
int Timestamp(const Options& a) {
  Check(dala::server::CheckTsaUrl(a.tsa_url));
  auto core = OpenCore(a);
  const uint64_t size = Check(core->StampNewestHead(
      [&](const std::string& q) { return dala::server::PostTimeStampQuery(a.tsa_url, q, 20000); }));
  if (size == 0) {
    std::fprintf(stderr, "Nothing to stamp: the newest head is stamped already (by this node or another), or the log is "
                         "empty.\n");
  } else {
    std::fprintf(stderr, "Stamped the log head of %llu leaves.\n", static_cast<unsigned long long>(size));
  }
  std::printf("%llu\n", static_cast<unsigned long long>(size));
  return kExitOk;
}

int Init(const Options& a) {
  auto root = dala::protocol::ParseIdentity(a.organisation);
  if (!root.ok()) throw UsageError{"--organisation: " + root.status().message()};
  Check(dala::server::ServerCore::Init(a.data, *root, a.database, a.blobs));
  auto core = OpenCore(a);
  std::fprintf(stderr,
               "Server data created in %s for the organisation %s (fingerprint %s).\n"
               "Its server key, which the desk names in invites (dala desk invite --server-key):\n",
               a.data.c_str(), a.organisation.c_str(), dala::protocol::Fingerprint(*root).c_str());
  std::printf("%s\n", dala::encoding::ToHex(core->server_key()).c_str());
  return kExitOk;
}

int Statement(const Options& a) {
  std::string bytes;
  {
    std::FILE* f = std::fopen(a.statement.c_str(), "rb");
    if (f == nullptr) throw UsageError{"cannot read the statement file '" + a.statement + "'"};
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && bytes.size() < (1u << 20)) bytes.append(buf, n);
    std::fclose(f);
  }
  auto core = OpenCore(a);
  Check(core->SetStatement(bytes));
  std::fprintf(stderr, "Statement installed: phones receive it with their next answers.\n");
  return kExitOk;
}

int Pin(const Options& a) {
  std::printf("%s\n", dala::encoding::ToHex(dala::crypto::Bytes(Check(dala::tls::CertificateFilePin(a.tls_cert)))).c_str());
  return kExitOk;
}

// An invite's name for operators: the first 8 bytes of its hash, in hex (InviteInfo::hash).
std::string InviteId(const dala::crypto::Hash& h) { return dala::encoding::ToHex(std::span(h.data(), 8)); }

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

int Devices(const Options& a) {
  auto core = OpenCore(a);
  auto devices = Check(core->Devices());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& d : devices) {
    std::string key = dala::encoding::ToHex(d.key);
    if (a.json) {
      list.push_back({{"device", key}, {"label", d.label}, {"enrolled", dala::IsoTime(d.enrolled_ms)},
                      {"last_contact", dala::IsoTime(d.last_seen_ms)}, {"revoked", d.revoked},
                      {"reports", d.reports}, {"invite", InviteId(d.invite)}});
    } else {
      std::printf("%s  %-8s %6llu reports  last contact %-24s %s\n", key.c_str(), d.revoked ? "revoked" : "active",
                  static_cast<unsigned long long>(d.reports), OrDash(dala::IsoTime(d.last_seen_ms)).c_str(),
                  d.label.c_str());
    }
  }
  if (a.json) PrintJson(list);
  else if (devices.empty()) std::fprintf(stderr, "No device has enrolled yet.\n");
  return kExitOk;
}

int Label(const Options& a) {
  auto key = Key(a.device, "the device key");
  auto core = OpenCore(a);
  Check(core->LabelDevice(key, a.label));
  std::fprintf(stderr, a.label.empty() ? "Label removed.\n" : "Label set.\n");
  return kExitOk;
}

// The state of an invite at `now`, in one word.
std::string InviteState(const dala::server::InviteInfo& i, int64_t now) {
  if (i.cancelled_ms != 0) return "cancelled";
  if (i.uses != 0 && i.used >= i.uses) return "used-up";
  if (i.expires_ms != 0 && i.expires_ms <= now) return "expired";
  return "active";
}

int Invites(const Options& a) {
  auto core = OpenCore(a);
  auto invites = Check(core->Invites());
  const int64_t now = dala::SystemNowMs();
  nlohmann::json list = nlohmann::json::array();
  for (const auto& i : invites) {
    const std::string state = InviteState(i, now);
    const uint64_t left = i.uses > i.used && state == "active" ? i.uses - i.used : 0;
    if (a.json) {
      list.push_back({{"invite", InviteId(i.hash)}, {"state", state}, {"uses", i.uses}, {"used", i.used},
                      {"uses_left", left}, {"issued", dala::IsoTime(i.issued_ms)},
                      {"expires", dala::IsoTime(i.expires_ms)}, {"last_used", dala::IsoTime(i.last_used_ms)},
                      {"cancelled", dala::IsoTime(i.cancelled_ms)}, {"urls", i.urls}});
    } else {
      std::printf("%s  %-9s %llu of %llu used, %llu left  expires %s\n", InviteId(i.hash).c_str(), state.c_str(),
                  static_cast<unsigned long long>(i.used), static_cast<unsigned long long>(i.uses),
                  static_cast<unsigned long long>(left), OrDash(dala::IsoTime(i.expires_ms)).c_str());
    }
  }
  if (a.json) PrintJson(list);
  else if (invites.empty())
    std::fprintf(stderr, "No invite used or cancelled yet (the desk makes invites; the server learns of each at its "
                         "first use).\n");
  return kExitOk;
}

// `invites cancel INVITE`: the invite's text (DALA2-..., which also cancels one never used) or the start of
// an id that 'invites' lists (at least 8 hex digits, naming one invite).
int CancelInvite(const Options& a) {
  auto core = OpenCore(a);
  dala::crypto::Hash hash{};
  if (a.invite.rfind(dala::protocol::kInvitePrefix, 0) == 0) {
    auto decoded = dala::protocol::DecodeInvite(a.invite);
    if (!decoded.ok()) throw UsageError{"that invite does not read: " + decoded.status().message()};
    if (decoded->checked.root != core->organisation_key())
      throw UsageError{"that invite is another organisation's"};
    if (decoded->checked.invite.server_key() !=
        std::string_view(reinterpret_cast<const char*>(core->server_key().data()), 32))
      throw UsageError{"that invite is for another server of the organisation"};
    hash = dala::crypto::Blake2b256(dala::crypto::Bytes(decoded->checked.invite.enrol_key()));
  } else {
    std::string prefix = a.invite;
    for (auto& c : prefix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (prefix.size() < 8 || prefix.size() > 64 || prefix.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw UsageError{"INVITE is the invite's text (DALA2-...) or at least 8 hex digits of its id ('invites')"};
    int found = 0;
    for (const auto& i : Check(core->Invites()))
      if (dala::encoding::ToHex(i.hash).rfind(prefix, 0) == 0) hash = i.hash, ++found;
    if (found == 0) Check(Status(Code::kNotFound, "no invite known to this server has an id starting " + prefix +
                                                      " (to cancel one never used, give its text)"));
    if (found > 1) throw UsageError{"more than one invite's id starts " + prefix + ": give more digits"};
  }
  Check(core->CancelInvite(hash));
  std::fprintf(stderr, "Invite %s cancelled: no more devices enrol with it (those enrolled stay).\n",
               InviteId(hash).c_str());
  return kExitOk;
}

int Revoke(const Options& a) {
  auto key = Key(a.device, "the device key");
  auto core = OpenCore(a);
  Check(core->Revoke(key));
  std::fprintf(stderr, "Device revoked: its requests are refused from now on.\n");
  return kExitOk;
}

int Export(const Options& a) {
  auto core = OpenCore(a);
  uint64_t stored = 0;
  for (const auto& d : Check(core->Devices())) stored += d.reports;
  if (stored == 0 && a.since == 0) {
    std::fprintf(stderr, "dala-server: nothing to export: no sealed reports received yet (%s was not written)\n",
                 a.out.c_str());
    return kExitNotFound;
  }
  uint64_t log_size = 0;
  auto n = Check(core->Export(a.out, a.since, &log_size));  // --since past the log's end: exit 2
  std::fprintf(stderr, "Exported %llu sealed reports to %s (attachments in %s.media), log positions %llu to %llu.\n"
               "The next incremental export: --since %llu\n",
               static_cast<unsigned long long>(n), a.out.c_str(), a.out.c_str(),
               static_cast<unsigned long long>(a.since), static_cast<unsigned long long>(log_size),
               static_cast<unsigned long long>(log_size));
  return kExitOk;
}

void PrintProblems(const std::vector<std::string>& problems) {
  for (const auto& p : problems) std::fprintf(stderr, "problem: %s\n", p.c_str());
}

std::string AuditText(const dala::server::AuditReport& r) {
  char line[256];
  std::snprintf(line, sizeof line, "%llu reports, a log of %llu leaves (%llu signed heads), %llu attachments (%llu bytes)",
                static_cast<unsigned long long>(r.reports), static_cast<unsigned long long>(r.log_size),
                static_cast<unsigned long long>(r.heads), static_cast<unsigned long long>(r.attachments),
                static_cast<unsigned long long>(r.attachment_bytes));
  return line;
}

int Backup(const Options& a) {
  auto sum = Check(dala::server::Backup(a.data, a.out, a.include_key));
  std::fprintf(stderr, "Backed up %llu reports, a log of %llu leaves and %llu attachments (%llu bytes) to %s.\n",
               static_cast<unsigned long long>(sum.reports), static_cast<unsigned long long>(sum.log_size),
               static_cast<unsigned long long>(sum.attachments), static_cast<unsigned long long>(sum.attachment_bytes),
               a.out.c_str());
  if (sum.key_included)
    std::fprintf(stderr, "It holds the database key: whoever has this file has the server's signing key and its "
                         "records. Keep it as safe as the data directory.\n");
  else
    std::fprintf(stderr, "It holds no key: keep a copy of %s/server.key apart from your backups (it never changes); "
                         "restoring needs it (restore --key).\n", a.data.c_str());
  return kExitOk;
}

int Restore(const Options& a) {
  auto r = Check(dala::server::Restore(a.from, a.data, a.key));
  if (!r.audit.problems.empty()) {
    PrintProblems(r.audit.problems);
    std::fprintf(stderr, "dala-server: the backup did not restore whole: nothing was kept in %s\n", a.data.c_str());
    return kExitError;
  }
  std::fprintf(stderr, "Restored the backup of %s into %s: %s, every check passed.\n", r.created.c_str(),
               a.data.c_str(), AuditText(r.audit).c_str());
  return kExitOk;
}

int CheckData(const Options& a) {
  auto core = OpenCore(a);
  auto r = Check(core->Audit());
  if (a.json) {
    PrintJson({{"reports", r.reports}, {"log_size", r.log_size}, {"heads", r.heads}, {"attachments", r.attachments},
               {"attachment_bytes", r.attachment_bytes}, {"problems", r.problems}});
  } else {
    PrintProblems(r.problems);
    std::fprintf(stderr, "%s: %s%s\n", a.data.c_str(), AuditText(r).c_str(),
                 r.problems.empty() ? "; every check passed" : "");
  }
  return r.problems.empty() ? kExitOk : kExitError;
}

CLI::Option* AddData(CLI::App* sub, Options& o, bool required = true) {
  auto* opt = sub->add_option("--data", o.data, "the server's data directory");
  if (required) opt->required();
  return opt;
}

// The deepest subcommand the command line chose.
const CLI::App* Chosen(const CLI::App& app) {
  const CLI::App* cur = &app;
  for (;;) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) return cur;
    cur = subs.front();
  }
}

constexpr char kAbout[] =
    "dala-server: the organisation's sync server. It stores sealed reports it cannot read and signs\n"
    "a receipt for each. Run 'dala-server COMMAND --help' for a command's options.";

void BuildCli(CLI::App& app, Options& o, Handlers& handlers) {
  app.set_version_flag("--version", VersionText, "prints the versions of dala-server, SQLCipher and libsodium");
  app.require_subcommand(1);
  app.footer("Exit codes: 0 success, 1 error, 2 usage or invalid input, 4 no such data directory or device, or\n"
             "nothing to export.");

  auto* init = app.add_subcommand("init", "creates the data directory: encrypted database, its key file, the server's "
                                          "signing key (its public key printed alone on the last line)");
  AddData(init, o);
  init->add_option("--organisation", o.organisation,
                   "the organisation's identity, DALA-ORG1-... (dala desk keygen prints it)")->required();
  init->add_option("--database", o.database,
                   "keep the data in this PostgreSQL database (postgresql://USER@HOST:PORT/DB; a password from "
                   "PGPASSWORD or ~/.pgpass, not the URL) instead of the embedded one (docs/operations.md)");
  init->add_option("--blobs", o.blobs,
                   "keep attachments in this directory (absolute; one that every node on the --database shares, "
                   "e.g. a network file system) instead of DIR/attachments");
  handlers[init] = Init;

  auto* pin = app.add_subcommand("pin", "prints the TLS pin of a certificate (for dala desk invite --tls-pin)");
  pin->add_option("--tls-cert", o.tls_cert, "the certificate (PEM) the server serves")->required()
      ->check(CLI::ExistingFile);
  handlers[pin] = Pin;

  auto* statement = app.add_subcommand("statement", "installs the organisation's newer statement (dala desk "
                                                    "statement writes it): new recipient keys, revoked servers");
  AddData(statement, o);
  statement->add_option("--file", o.statement, "the statement file")->required()->check(CLI::ExistingFile);
  handlers[statement] = Statement;

  auto* run = app.add_subcommand("run", "serves phones (default 127.0.0.1:8443); JSON-lines logs on stderr; SIGTERM "
                                        "or SIGINT stop it gracefully");
  AddData(run, o, false);
  run->add_option("--config", o.config, "read these options from a TOML or INI file (keys as the long options, "
                                        "e.g. listen = \"0.0.0.0:8443\"); the command line wins")
      ->check(CLI::ExistingFile)->configurable(false);
  run->add_option("--listen", o.listen, "HOST:PORT (default 127.0.0.1:8443)");
  run->add_option("--tls-cert", o.tls_cert, "serve HTTPS with this certificate (PEM) ...")->check(CLI::ExistingFile);
  run->add_option("--tls-key", o.tls_key, "... and this key (PEM)")->check(CLI::ExistingFile);
  run->add_option("--threads", o.threads, "I/O threads (default 2)")->check(CLI::Range(1, 256));
  run->add_option("--max-connections", o.max_connections, "connections at once (default 1024)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  run->add_option("--max-body-mib", o.max_body_mib, "largest request body (default 16)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{4096}));
  run->add_option("--max-batch", o.max_batch, "reports per push (default 256)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{65536}));
  run->add_option("--header-timeout", o.header_timeout, "seconds to send the headers; the idle limit (default 10)")
      ->check(CLI::Range(1, 3600));
  run->add_option("--body-timeout", o.body_timeout, "seconds to send a body (default 60)")->check(CLI::Range(1, 86400));
  run->add_option("--max-buffered-mib", o.max_buffered_mib,
                  "request bodies held in memory at once beyond 64 KiB per connection (default 256)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  run->add_option("--max-envelope-mib", o.max_envelope_mib,
                  "largest sealed report accepted; a larger one is rejected for good (default 8)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{4096}));
  run->add_option("--max-storage-mib", o.max_storage_mib,
                  "attachment bytes held at most; phones are told \"storage full\" (default 0: no limit)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 30));
  run->add_flag("--quiet", o.quiet, "no request log");
  run->add_flag("--log-client-addresses", o.log_client_addresses,
                "log each request's client address (off by default: the log then holds no client addresses)");
  run->add_option("--trusted-proxy", o.trusted_proxies,
                  "with --log-client-addresses: a reverse proxy's address whose X-Forwarded-For is believed "
                  "(repeatable; from any other peer the header is ignored)")
      ->check([](const std::string& a) {
        unsigned char buf[16];
        return inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1
                   ? std::string()
                   : "'" + a + "' is not an IP address";
      });
  run->add_option("--metrics-listen", o.metrics_listen,
                  "HOST:PORT of a second, plain-HTTP listener that serves GET /metrics (Prometheus) and nothing "
                  "else (default: none; the main listener answers /metrics to loopback clients only)");
  run->add_option("--tsa-url", o.tsa_url,
                  "an RFC 3161 time-stamping authority (http://HOST[:PORT][/PATH]): the log's heads get its tokens");
  run->add_option("--tsa-interval", o.tsa_interval, "seconds between stamps when the log grew (default 60)")
      ->check(CLI::Range(1, 86400));
  run->add_option("--node-check-interval", o.node_check_interval,
                  "on PostgreSQL: seconds between checks that every running node uses this node's attachment "
                  "store (default 60)")
      ->check(CLI::Range(1, 3600));
  handlers[run] = Run;

  auto* stamp = app.add_subcommand("timestamp", "has the newest log head stamped by a time-stamping authority now; "
                                                "prints the head's size (0: nothing new)");
  AddData(stamp, o);
  stamp->add_option("--tsa-url", o.tsa_url, "the RFC 3161 time-stamping authority (http://HOST[:PORT][/PATH])")
      ->required();
  handlers[stamp] = Timestamp;

  auto* devices = app.add_subcommand("devices", "lists enrolled devices, revoked or not, with their report counts, "
                                                "last contact and labels");
  AddData(devices, o);
  devices->add_flag("--json", o.json, "a JSON array of {device, label, enrolled, last_contact (ISO 8601 UTC; its "
                                      "last push, to the minute), revoked, reports, invite}");
  handlers[devices] = Devices;

  auto* label = app.add_subcommand("label", "gives a device a label of the operator's (shown by 'devices'; never "
                                            "sent to phones; an empty one removes it)");
  AddData(label, o);
  label->add_option("DEVICE_KEY", o.device, "the device's key (64 hex, from 'devices')")->required();
  label->add_option("LABEL", o.label, "one line, at most 200 bytes")->required();
  handlers[label] = Label;

  auto* invites = app.add_subcommand("invites", "lists the invites devices enrolled with, or that were cancelled: "
                                                "uses left, expiry, state");
  AddData(invites, o);
  invites->add_flag("--json", o.json, "a JSON array of {invite, state, uses, used, uses_left, issued, expires, "
                                       "last_used, cancelled, urls}");
  invites->require_subcommand(0, 1);
  handlers[invites] = Invites;
  auto* cancel = invites->add_subcommand("cancel", "no more devices enrol with that invite (those enrolled stay)");
  cancel->fallthrough();  // --data is the invites command's
  cancel->add_option("INVITE", o.invite, "the invite's text (DALA2-...) or the start of its id (8+ hex digits)")
      ->required();
  handlers[cancel] = CancelInvite;

  auto* revoke = app.add_subcommand("revoke", "refuses that device from now on");
  AddData(revoke, o);
  revoke->add_option("DEVICE_KEY", o.device, "the device's key (64 hex, from 'devices')")->required();
  handlers[revoke] = Revoke;

  auto* exp = app.add_subcommand("export", "writes every stored sealed report with its receipt, for the desk "
                                           "(dala desk open); attachments in PATH.media/");
  AddData(exp, o);
  exp->add_option("--out", o.out, "the export file")->required();
  exp->add_option("--since", o.since, "only what the log gained from this position on (the log size an earlier "
                                      "export printed): an incremental export for dala desk import");
  handlers[exp] = Export;

  auto* backup = app.add_subcommand("backup", "writes a consistent backup of the data directory to one file, while the "
                                              "server runs (docs/operations.md)");
  AddData(backup, o);
  backup->add_option("--out", o.out, "the backup file (written whole, then renamed into place)")->required();
  backup->add_flag("--include-key", o.include_key, "put the database key in the backup too (then the backup is as "
                                                   "secret as the data directory)");
  handlers[backup] = Backup;

  auto* restore = app.add_subcommand("restore", "restores a backup into a new data directory and checks it whole");
  AddData(restore, o);
  restore->add_option("--from", o.from, "the backup file")->required();
  restore->add_option("--key", o.key, "the old data directory's server.key (for a backup that holds no key)");
  handlers[restore] = Restore;

  auto* check = app.add_subcommand("check", "checks the data directory whole: database, log, heads, attachments");
  AddData(check, o);
  check->add_flag("--json", o.json, "prints the result as JSON");
  handlers[check] = CheckData;
}

// `run`'s options as the command line and the --config file give them now (read again on SIGHUP).
Options ReadRunOptions() {
  CLI::App app{kAbout, "dala-server"};
  Options o;
  Handlers handlers;
  BuildCli(app, o, handlers);
  try {
    app.parse(g_argc, g_argv);
  } catch (const CLI::ParseError& e) {
    throw UsageError{e.what()};
  }
  if (!o.config.empty()) ApplyConfig(*app.get_subcommand("run"), o.config);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  CLI::App app{kAbout, "dala-server"};
  Options o;
  Handlers handlers;
  BuildCli(app, o, handlers);
  CLI::App* run = app.get_subcommand("run");

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      std::fputs(app.help().c_str(), stdout);
      return kExitOk;
    } catch (const CLI::CallForAllHelp&) {
      std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
      return kExitOk;
    } catch (const CLI::CallForVersion& v) {
      std::printf("%s\n", v.what());
      return kExitOk;
    } catch (const CLI::ParseError& e) {
      const CLI::App* at = Chosen(app);
      std::string where = at == &app ? "dala-server" : "dala-server " + at->get_name();
      std::fprintf(stderr, "%s: %s\n(run '%s --help' for usage)\n", where.c_str(), e.what(), where.c_str());
      return kExitUsage;
    }
    if (run->parsed()) {
      if (!o.config.empty()) ApplyConfig(*run, o.config);
      if (o.data.empty()) throw UsageError{"run needs --data DIR (on the command line or in the --config file)"};
    }
    return handlers.at(Chosen(app))(o);
  } catch (const UsageError& u) {
    std::fprintf(stderr, "dala-server: %s\n(run 'dala-server --help' for usage)\n", u.message.c_str());
    return kExitUsage;
  } catch (const Failure& f) {
    std::fprintf(stderr, "dala-server: %s\n", f.st.message().c_str());
    if (f.st.code() == Code::kNotFound) return kExitNotFound;
    if (f.st.code() == Code::kInvalidArgument) return kExitUsage;
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dala-server: unexpected error: %s\n", e.what());
    return kExitError;
  }
}
