// dala-server: the organisation's sync server. Stores sealed reports it cannot read, signs receipts.
// Exit codes: 0 success, 1 error, 2 usage, 4 no such data directory or device.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "../../tools/cli/args.h"
#include "crypto.h"
#include "fsutil.h"
#include "http_server.h"
#include "server_core.h"
#include "store.h"
#include "tls_pin.h"

namespace {

using cli::Args;
using cli::UsageError;
using dala::Code;
using dala::Status;

const char kUsage[] = R"(usage: dala-server COMMAND [OPTIONS]

  dala-server init --data DIR --recipient PUBKEY [--recipient PUBKEY]...
  dala-server invite --data DIR --url URL [--url URL]... [--uses N] [--expires DURATION] [--organisation NAME]
                     [--tls-cert FILE]   prints the invite (DURATION: 30m, 12h, 7d; default 7d; uses: 1);
                                         --tls-cert pins that certificate's key (self-signed servers)
  dala-server run --data DIR [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--threads N]
                  [--max-connections N] [--max-body-mib N] [--max-batch N] [--header-timeout S] [--body-timeout S]
                  [--max-buffered-mib N] [--max-storage-mib N] [--quiet]
                                         --max-storage-mib: attachment bytes held at most
                                         --max-buffered-mib: request bodies held in memory at once (256)
  dala-server devices --data DIR [--json]
  dala-server revoke --data DIR DEVICE_KEY
  dala-server export --data DIR --out PATH   attachments go to PATH.media/ (hard links where possible)

run listens on 127.0.0.1:8443 unless told otherwise, logs JSON lines on stderr (never contents or keys),
and stops gracefully on SIGTERM or SIGINT: requests in flight finish, nothing is half-written.
)";

const char* const kFlags[] = {"json", "quiet", "help"};
const char* const kValued[] = {"data", "recipient", "url", "uses", "expires", "organisation", "listen", "tls-cert",
                               "tls-key", "threads", "max-connections", "max-body-mib", "max-batch", "header-timeout",
                               "body-timeout", "out", "max-storage-mib", "max-buffered-mib"};

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

uint64_t Number(const std::string& s, const char* what) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 12)
    throw UsageError{std::string(what) + " must be a whole number"};
  return std::stoull(s);
}

int64_t DurationMs(const std::string& s) {
  if (s.size() < 2) throw UsageError{"a duration looks like 30m, 12h or 7d"};
  uint64_t n = Number(s.substr(0, s.size() - 1), "a duration");
  switch (s.back()) {
    case 's': return static_cast<int64_t>(n) * 1000;
    case 'm': return static_cast<int64_t>(n) * 60000;
    case 'h': return static_cast<int64_t>(n) * 3600000;
    case 'd': return static_cast<int64_t>(n) * 86400000;
  }
  throw UsageError{"a duration looks like 30m, 12h or 7d"};
}

dala::crypto::PublicKey Key(const std::string& hex, const char* what) {
  dala::crypto::PublicKey k;
  if (!dala::crypto::FromHex(hex, k)) throw UsageError{std::string(what) + " must be 64 hexadecimal characters"};
  return k;
}

std::unique_ptr<dala::server::ServerCore> OpenCore(const Args& a, dala::server::Limits limits = {}) {
  return Check(dala::server::ServerCore::Open(a.need("data"), limits));
}

int Run(const Args& a) {
  dala::server::HttpOptions o;
  std::string listen = a.get("listen").value_or("127.0.0.1:8443");
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw UsageError{"--listen is HOST:PORT"};
  o.host = listen.substr(0, colon);
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
  uint64_t port = Number(listen.substr(colon + 1), "the port");
  if (port > 65535) throw UsageError{"the port must be at most 65535"};
  o.port = static_cast<uint16_t>(port);
  o.tls_cert = a.get("tls-cert").value_or("");
  o.tls_key = a.get("tls-key").value_or("");
  if (auto v = a.get("threads")) o.threads = static_cast<int>(std::max<uint64_t>(1, Number(*v, "--threads")));
  if (auto v = a.get("max-connections")) o.max_connections = Number(*v, "--max-connections");
  if (auto v = a.get("max-body-mib")) o.max_body_bytes = Number(*v, "--max-body-mib") << 20;
  if (auto v = a.get("max-buffered-mib")) o.max_buffered_bytes = Number(*v, "--max-buffered-mib") << 20;
  if (auto v = a.get("header-timeout")) o.header_timeout_s = static_cast<int>(Number(*v, "--header-timeout"));
  if (auto v = a.get("body-timeout")) o.body_timeout_s = static_cast<int>(Number(*v, "--body-timeout"));
  o.log_requests = !a.flag("quiet");
  dala::server::Limits limits;
  limits.max_body_bytes = o.max_body_bytes;
  if (auto v = a.get("max-batch")) limits.max_batch = std::max<uint64_t>(1, Number(*v, "--max-batch"));
  if (auto v = a.get("max-storage-mib")) limits.max_storage_bytes = Number(*v, "--max-storage-mib") << 20;

  // Signals are taken by one thread with sigwait; every other thread has them blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Crash tests only: slow the server down at its failpoints so a SIGKILL lands inside a push.
  if (const char* d = std::getenv("DALA_TEST_FAILPOINT_DELAY_MS")) {
    static int delay_ms = std::atoi(d);
    dala::testing::SetFailpointHook([](const char*) { std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms)); });
  }
  auto core = OpenCore(a, limits);
  dala::server::HttpServer server(*core, o);
  Check(server.Listen());
  std::printf("listening on %s:%u\n", o.host.c_str(), server.port());
  std::fflush(stdout);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    server.Stop();
  });
  server.Run();
  // Wake the signal thread if Run ended for another reason.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return 0;
}

int Main(const Args& a) {
  const std::string& cmd = a.words[0];
  if (cmd == "init") {
    std::vector<dala::crypto::PublicKey> recipients;
    for (const auto& [k, v] : a.ordered)
      if (k == "recipient") recipients.push_back(Key(v, "--recipient"));
    Check(dala::server::ServerCore::Init(a.need("data"), recipients));
    auto core = OpenCore(a);
    std::fprintf(stderr, "Server data created in %s. Server key: %s\n", a.need("data").c_str(),
                 dala::crypto::ToHex(core->server_key()).c_str());
    return 0;
  }
  if (cmd == "invite") {
    std::vector<std::string> urls;
    for (const auto& [k, v] : a.ordered)
      if (k == "url") urls.push_back(v);
    uint32_t uses = static_cast<uint32_t>(Number(a.get("uses").value_or("1"), "--uses"));
    int64_t expires = dala::SystemNowMs() + DurationMs(a.get("expires").value_or("7d"));
    std::string pin;
    if (auto cert = a.get("tls-cert")) pin = Check(dala::tls::CertificateFilePin(*cert));
    auto core = OpenCore(a);
    std::printf("%s\n",
                Check(core->CreateInvite(urls, uses, expires, a.get("organisation").value_or(""), pin)).c_str());
    return 0;
  }
  if (cmd == "run") return Run(a);
  if (cmd == "devices") {
    auto core = OpenCore(a);
    auto devices = Check(core->Devices());
    bool json = a.flag("json");
    if (json) std::printf("[");
    for (size_t i = 0; i < devices.size(); ++i) {
      const auto& d = devices[i];
      std::string key = dala::crypto::ToHex(d.key);
      if (json)
        std::printf("%s{\"device\":\"%s\",\"enrolled\":%lld,\"last_seen\":%lld,\"revoked\":%s,\"reports\":%llu}",
                    i ? "," : "", key.c_str(), (long long)d.enrolled_ms, (long long)d.last_seen_ms,
                    d.revoked ? "true" : "false", (unsigned long long)d.reports);
      else
        std::printf("%s  %-8s %llu reports\n", key.c_str(), d.revoked ? "revoked" : "active",
                    (unsigned long long)d.reports);
    }
    if (json) std::printf("]\n");
    return 0;
  }
  if (cmd == "revoke") {
    if (a.words.size() != 2) throw UsageError{"usage: dala-server revoke --data DIR DEVICE_KEY"};
    auto core = OpenCore(a);
    Check(core->Revoke(Key(a.words[1], "the device key")));
    std::fprintf(stderr, "Device revoked: its requests are refused from now on.\n");
    return 0;
  }
  if (cmd == "export") {
    auto core = OpenCore(a);
    uint64_t n = Check(core->Export(a.need("out")));
    std::fprintf(stderr, "Exported %llu sealed reports to %s (attachments in %s.media).\n", (unsigned long long)n,
                 a.need("out").c_str(), a.need("out").c_str());
    return 0;
  }
  throw UsageError{"unknown command '" + cmd + "'"};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a = cli::Parse(argc, argv, kFlags, kValued);
    if (a.flag("help") || a.words.empty()) {
      std::fputs(kUsage, a.flag("help") ? stdout : stderr);
      return a.flag("help") ? 0 : 2;
    }
    return Main(a);
  } catch (const UsageError& u) {
    std::fprintf(stderr, "dala-server: %s\n(run 'dala-server --help' for usage)\n", u.message.c_str());
    return 2;
  } catch (const Failure& f) {
    std::fprintf(stderr, "dala-server: %s\n", f.st.message().c_str());
    if (f.st.code() == Code::kNotFound) return 4;
    if (f.st.code() == Code::kInvalidArgument) return 2;
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dala-server: unexpected error: %s\n", e.what());
    return 1;
  }
}
