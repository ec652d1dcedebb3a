// dala desk import and dala desk export: the desk store (docs/desk.md), through libdala_desk.
#include <dala/desk.hh>

#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli.h"

namespace dala::cli {
namespace {

struct DeskStoreArgs {
  std::string key, data, passphrase_file;
};

void AddDeskStoreOptions(CLI::App* c, DeskStoreArgs& a) {
  c->add_option("--key", a.key, "the organisation key file")->required();
  c->add_option("--data", a.data, "the desk's data directory (created when missing)")->required();
  c->add_option("--passphrase-file", a.passphrase_file,
                "read the desk passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
}

struct OpenedStore {
  Ref<dala_desk> desk;  // declared first: closed after the store
  Ref<dala_desk_store> store;
};

OpenedStore OpenDeskStore(const DeskStoreArgs& a) {
  Secret pass = ReadPassphrase(a.passphrase_file, "DALA_PASSPHRASE", "Desk passphrase: ", false);
  dala_credential cred = Passphrase(pass.value);
  OpenedStore s;
  Call(dala_desk_open, a.key.c_str(), &cred, Out(s.desk));
  Call(dala_desk_store_open, s.desk.get(), a.data.c_str(), Out(s.store));
  return s;
}

struct ImportArgs {
  DeskStoreArgs store;
  std::string from, tsa_cert;
  bool keep_failed = false, json = false;
};

void Import(const ImportArgs& a, int* rc) {
  OpenedStore s = OpenDeskStore(a.store);
  dala_desk_open_options o;
  dala_desk_open_options_init(&o);
  if (!a.tsa_cert.empty()) o.tsa_cert_path = a.tsa_cert.c_str();
  dala_desk_import_result r;
  char* out = nullptr;
  Call(dala_desk_store_import, s.store.get(), a.from.c_str(), &o, a.keep_failed ? 1 : 0, &r, &out);
  const nlohmann::json j = nlohmann::json::parse(TakeString(out));
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
  } else if (r.imported) {
    std::printf("imported %s: %llu report versions added, %llu held already (%llu reports new or updated); "
                "%llu of %llu verified\n",
                a.from.c_str(), (unsigned long long)r.added, (unsigned long long)r.held,
                (unsigned long long)r.reports_changed, (unsigned long long)r.summary.verified,
                (unsigned long long)r.summary.reports);
    for (const auto& p : j["problems"]) std::printf("problem: %s\n", p.get<std::string>().c_str());
  } else {
    std::printf("refused %s: the desk store is unchanged\n", a.from.c_str());
    for (const auto& p : j["problems"]) std::printf("problem: %s\n", p.get<std::string>().c_str());
    if (j["summary"].is_object())
      for (const auto& p : j["summary"]["problems"]) std::printf("  %s\n", p.get<std::string>().c_str());
  }
  *rc = r.imported ? kExitOk : kExitError;
}

struct PullArgs {
  DeskStoreArgs store;
  std::vector<std::string> urls;
  std::string server_key, tls_pin, proxy, tsa_cert;
  bool json = false;
};

void Pull(const PullArgs& a, int* rc) {
  OpenedStore s = OpenDeskStore(a.store);
  dala_desk_pull_options o;
  dala_desk_pull_options_init(&o);
  std::vector<const char*> urls;
  for (const auto& u : a.urls) urls.push_back(u.c_str());
  o.urls = urls.data();
  o.url_count = urls.size();
  uint8_t server[32], pin[32];
  if (!a.server_key.empty()) {
    FromHex32(a.server_key, server, "--server-key");
    o.server_key = server;
  }
  if (!a.tls_pin.empty()) {
    FromHex32(a.tls_pin, pin, "--tls-pin");
    o.tls_pin = pin;
  }
  if (!a.proxy.empty()) o.proxy_url = a.proxy.c_str();
  if (!a.tsa_cert.empty()) o.tsa_cert_path = a.tsa_cert.c_str();
  char* out = nullptr;
  Call(dala_desk_store_pull, s.desk.get(), s.store.get(), &o, &out);
  const nlohmann::json j = nlohmann::json::parse(TakeString(out));
  bool all = true;
  for (const auto& v : j["servers"]) all = all && v["imported"].get<bool>() && v["error"].is_null();
  *rc = all ? kExitOk : kExitError;
  for (const auto& v : j["servers"])
    if (!v["error"].is_null())
      std::fprintf(stderr, "dala: server %s: %s\n", v["server_key"].get<std::string>().c_str(),
                   v["error"].get<std::string>().c_str());
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  for (const auto& v : j["servers"]) {
    if (!v["error"].is_null()) continue;  // said on stderr
    if (v["listed_desk"].get<bool>())
      std::printf("the organisation's statement now lists this desk as one that may fetch exports (the key file "
                  "holds the new statement; the server learns it with each request)\n");
    const auto pages = v["pages"].get<unsigned long long>(), files = v["media_files"].get<unsigned long long>();
    std::printf("pulled from server %s: log positions %llu to %llu in %llu page%s, %llu attachment file%s "
                "(%s)\n",
                v["server_key"].get<std::string>().c_str(), v["log_from"].get<unsigned long long>(),
                v["log_size"].get<unsigned long long>(), pages, pages == 1 ? "" : "s", files, files == 1 ? "" : "s",
                SizeText(v["media_bytes"].get<uint64_t>()).c_str());
    if (v["imported"].get<bool>())
      std::printf("imported: %llu report versions added, %llu held already (%llu reports new or updated); "
                  "%llu of %llu verified\n",
                  v["added"].get<unsigned long long>(), v["held"].get<unsigned long long>(),
                  v["reports_changed"].get<unsigned long long>(), v["summary"]["verified"].get<unsigned long long>(),
                  v["summary"]["reports"].get<unsigned long long>());
    else
      std::printf("refused: the desk store is unchanged; what was fetched is in %s/pull for dala desk open\n",
                  a.store.data.c_str());
    for (const auto& p : v["problems"]) std::printf("problem: %s\n", p.get<std::string>().c_str());
    if (!v["imported"].get<bool>() && v["summary"].is_object())
      for (const auto& p : v["summary"]["problems"]) std::printf("  %s\n", p.get<std::string>().c_str());
  }
}

struct ExportArgs {
  DeskStoreArgs store;
  std::string format, out;
  std::vector<std::string> reports;
};

void Export(const ExportArgs& a, int* rc) {
  OpenedStore s = OpenDeskStore(a.store);
  std::vector<const char*> ids;
  for (const auto& r : a.reports) ids.push_back(r.c_str());
  uint64_t rows = 0;
  Call(dala_desk_store_export, s.store.get(), a.format.c_str(), a.out.c_str(), ids.data(), ids.size(), &rows);
  std::printf("%llu reports written to %s%s\n", (unsigned long long)rows, a.out.c_str(),
              a.format == "evidence" ? " (check it: dala verify PACKAGE --organisation IDENTITY)" : "");
  *rc = kExitOk;
}

struct ServeArgs {
  DeskStoreArgs store;
  std::string listen = "127.0.0.1:0", tls_cert, tls_key, name, tiles;
};

void Serve(const ServeArgs& a, int* rc) {
  // SIGINT and SIGTERM are waited for, not handled: blocked before any thread starts.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  OpenedStore s = OpenDeskStore(a.store);
  dala_desk_serve_options o;
  dala_desk_serve_options_init(&o);
  o.listen = a.listen.c_str();
  if (!a.tls_cert.empty()) o.tls_cert_path = a.tls_cert.c_str();
  if (!a.tls_key.empty()) o.tls_key_path = a.tls_key.c_str();
  if (!a.name.empty()) o.name = a.name.c_str();
  if (!a.tiles.empty()) o.tiles_dir = a.tiles.c_str();
  Ref<dala_desk_server> server;
  Call(dala_desk_server_start, s.store.get(), &o, Out(server));
  char* url = nullptr;
  Call(dala_desk_server_get_url, server.get(), &url);
  std::printf("%s\n", TakeString(url).c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "dala: the desk is served until this process is stopped (Ctrl-C); the address works once\n");
  int sig = 0;
  sigwait(&stop, &sig);
  *rc = kExitOk;
}

struct VerifyArgs {
  std::string package, organisation, tsa_cert;
  bool json = false;
};

void VerifyPackage(const VerifyArgs& a, int* rc) {
  char* out = nullptr;
  Call(dala_desk_verify_package, a.organisation.c_str(), a.package.c_str(),
       a.tsa_cert.empty() ? nullptr : a.tsa_cert.c_str(), &out);
  const nlohmann::json v = nlohmann::json::parse(TakeString(out));
  if (a.json) {
    std::printf("%s\n", v.dump().c_str());
  } else {
    std::printf("package of %s: %llu reports, %llu versions, %llu attachments, %llu custody entries\n",
                v["organisation"].get<std::string>().c_str(), v["reports"].get<unsigned long long>(),
                v["versions"].get<unsigned long long>(), v["attachments"].get<unsigned long long>(),
                v["custody_entries"].get<unsigned long long>());
    for (const auto& c : v["checked"]) std::printf("checked: %s\n", c.get<std::string>().c_str());
    for (const auto& p : v["problems"]) std::printf("problem: %s\n", p.get<std::string>().c_str());
    std::printf("%s\n", v["ok"].get<bool>() ? "verified" : "NOT verified");
  }
  *rc = v["ok"].get<bool>() ? kExitOk : kExitError;
}

}  // namespace

void AddVerifyCommand(CLI::App& app, int* rc) {
  auto a = std::make_shared<VerifyArgs>();
  CLI::App* c = app.add_subcommand("verify", "checks an evidence package with the organisation's identity alone (no key "
                                             "file): exit 0 when every check holds, 1 when any fails");
  c->add_option("PACKAGE", a->package, "the evidence package (dala desk export --format evidence)")->required();
  c->add_option("--organisation", a->organisation, "the organisation's identity (DALA-ORG1-...)")->required();
  c->add_option("--tsa-cert", a->tsa_cert,
                "PEM certificates of the time-stamping authorities you trust: the versions' time-stamps are checked "
                "and their times claimed");
  c->add_flag("--json", a->json, "the verdict as JSON on stdout");
  c->callback([a, rc] { VerifyPackage(*a, rc); });
}

void AddDeskStoreCommands(CLI::App* desk, int* rc) {
  auto im = std::make_shared<ImportArgs>();
  CLI::App* c = desk->add_subcommand("import", "verifies a dala-server export and adds what is new to the desk store "
                                                "(all or nothing; exit 1: refused, the store unchanged)");
  AddDeskStoreOptions(c, im->store);
  c->add_option("--from", im->from, "the export (dala-server export --out)")->required();
  c->add_option("--tsa-cert", im->tsa_cert, "PEM certificates trusted for time: the log's time-stamps are checked");
  c->add_flag("--keep-failed", im->keep_failed,
              "keep report versions that fail their own checks, marked failed (the export itself must verify)");
  c->add_flag("--json", im->json, "the result as JSON on stdout");
  c->callback([im, rc] { Import(*im, rc); });

  auto pl = std::make_shared<PullArgs>();
  c = desk->add_subcommand("pull", "fetches what is new from the organisation's server and imports it (as import: "
                                   "all or nothing; exit 1: refused, the store unchanged)");
  AddDeskStoreOptions(c, pl->store);
  c->add_option("--url", pl->urls, "the server's address; repeat for more; default: every server pulled from before");
  c->add_option("--server-key", pl->server_key,
                "the key of the server at --url (64 hex); default: the one server the organisation authorises");
  c->add_option("--tls-pin", pl->tls_pin, "pin the server's certificate key (64 hex; dala-server pin prints it)");
  c->add_option("--proxy", pl->proxy, "socks5h://HOST:PORT: connect through this proxy (Tor)");
  c->add_option("--tsa-cert", pl->tsa_cert, "PEM certificates trusted for time: the log's time-stamps are checked");
  c->add_flag("--json", pl->json, "the result as JSON on stdout");
  c->callback([pl, rc] { Pull(*pl, rc); });

  auto ex = std::make_shared<ExportArgs>();
  c = desk->add_subcommand("export", "writes reports of the desk store as CSV or JSON Lines (recorded in the custody log)");
  AddDeskStoreOptions(c, ex->store);
  c->add_option("--format", ex->format, "csv, jsonl or evidence")->required()->check(CLI::IsMember({"csv", "jsonl", "evidence"}));
  c->add_option("--out", ex->out, "the file to write")->required();
  c->add_option("--report", ex->reports, "a report id (32 hex digits); repeat; default: every report")
      ->allow_extra_args(false);
  c->callback([ex, rc] { Export(*ex, rc); });

  auto sv = std::make_shared<ServeArgs>();
  c = desk->add_subcommand("serve", "serves the desk store to a browser: prints the address to open (it works once), "
                                    "then serves until stopped");
  AddDeskStoreOptions(c, sv->store);
  c->add_option("--listen", sv->listen, "HOST:PORT (default 127.0.0.1 and a free port); not loopback: TLS only");
  c->add_option("--tls-cert", sv->tls_cert, "PEM certificate chain (HTTPS)");
  c->add_option("--tls-key", sv->tls_key, "PEM private key (HTTPS)");
  c->add_option("--name", sv->name, "the name browsers use, HOST[:PORT] (the certificate's); needed with 0.0.0.0");
  c->add_option("--tiles", sv->tiles, "a directory of the organisation's own map tiles, DIR/Z/X/Y.png (XYZ, as "
                                      "gdal2tiles --xyz writes them): maps are drawn on them");
  c->callback([sv, rc] { Serve(*sv, rc); });
}

}  // namespace dala::cli
