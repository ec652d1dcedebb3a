// dala desk keygen and dala desk open: the organisation's side, through libdala_desk.
#include <dala/desk.hh>

#include <CLI/CLI.hpp>
#include <boost/url.hpp>
#include <boost/url/src.hpp>  // Boost.URL is compiled here: the one translation unit of dala that has it
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "cli.h"
#include "qr_code.h"

namespace dala::cli {
namespace {

// A server address phones will dial: http(s)://HOST[:PORT][/PATH], nothing else (the transport's rules).
void CheckServerUrl(const std::string& text) {
  auto bad = [&](const std::string& why) {
    throw UsageError{"--url '" + text + "' is not a server address: " + why +
                     " (write http://HOST:PORT or https://HOST:PORT)"};
  };
  if (text.find("://") == std::string::npos) bad("it has no scheme");
  {  // HOST:PORT with a PORT that is not a number (Boost.URL reads "host:notaport" otherwise)
    std::string authority = text.substr(text.find("://") + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    auto colon = authority.rfind(':');
    if (colon != std::string::npos && authority.find(']', colon) == std::string::npos &&
        authority.find_first_not_of("0123456789", colon + 1) != std::string::npos)
      bad("the port must be a number");
  }
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) bad("it is not a valid URL");
  const boost::urls::url_view& u = *parsed;
  if (u.scheme() != "http" && u.scheme() != "https") bad("the scheme must be http or https");
  if (!u.has_authority() || u.host().empty()) bad("it has no host");
  if (u.has_userinfo()) bad("a user name or password does not belong in it");
  if (u.has_port()) {
    if (u.port().empty()) bad("the port after ':' is missing");
    if (u.port().size() > 5 || u.port_number() == 0) bad("the port must be 1 to 65535");
  }
  if (u.has_query() || u.has_fragment()) bad("it may not have a query (?) or a fragment (#)");
}


int64_t DurationMs(const std::string& s) {
  const char* help = "--expires looks like 30m, 12h or 7d";
  if (s.size() < 2) throw UsageError{help};
  uint64_t n = 0;
  const std::string digits = s.substr(0, s.size() - 1);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    throw UsageError{help};
  n = std::stoull(digits);
  switch (s.back()) {
    case 's': return static_cast<int64_t>(n) * 1000;
    case 'm': return static_cast<int64_t>(n) * 60000;
    case 'h': return static_cast<int64_t>(n) * 3600000;
    case 'd': return static_cast<int64_t>(n) * 86400000;
  }
  throw UsageError{help};
}



// dala desk open (decrypt, check, write) and dala desk verify (check, write nothing decrypted).
struct OpenArgs {
  std::string key, from, out, summary, passphrase_file, tsa_cert;
  std::vector<std::string> receipts, since;
  bool json = false;
};

// The receipts in files written by dala receipts --json (a file that is not one is a usage error), with
// the pointer and size arrays the C API options take.
struct PhoneReceipts {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<const uint8_t*> ptrs;
  std::vector<size_t> sizes;
};
PhoneReceipts ReadPhoneReceipts(const std::vector<std::string>& files) {
  std::vector<std::vector<uint8_t>> receipts;
  for (const auto& file : files) {
    nlohmann::json list;
    try {
      list = nlohmann::json::parse(ReadTextFile(file, "--receipts"));
    } catch (const nlohmann::json::exception&) {
      throw UsageError{"--receipts " + file + " is not JSON (write it with dala receipts --json)"};
    }
    if (!list.is_array()) throw UsageError{"--receipts " + file + " is not a list of receipts (dala receipts --json)"};
    for (const auto& r : list) {
      if (!r.is_object() || !r.contains("receipt") || !r["receipt"].is_string())
        throw UsageError{"--receipts " + file + ": an entry without its signed receipt (from Dala 0.1?)"};
      std::string hex = r["receipt"].get<std::string>();
      if (hex.size() % 2 != 0 || hex.size() > 4096 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
        throw UsageError{"--receipts " + file + ": a receipt is not lowercase hex"};
      std::vector<uint8_t> bytes(hex.size() / 2);
      for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
      receipts.push_back(std::move(bytes));
    }
  }
  PhoneReceipts out{std::move(receipts), {}, {}};
  for (const auto& r : out.bytes) {
    out.ptrs.push_back(r.data());
    out.sizes.push_back(r.size());
  }
  return out;
}

void DeskOpen(const OpenArgs& a, int* rc) {
  const PhoneReceipts receipts = ReadPhoneReceipts(a.receipts);
  dala_desk_open_options o;
  dala_desk_open_options_init(&o);
  o.receipts = receipts.ptrs.data();
  o.receipt_sizes = receipts.sizes.data();
  o.receipt_count = receipts.ptrs.size();
  if (!a.summary.empty()) o.summary_path = a.summary.c_str();
  if (!a.tsa_cert.empty()) o.tsa_cert_path = a.tsa_cert.c_str();
  std::vector<const char*> since;
  for (const auto& f : a.since) since.push_back(f.c_str());
  o.earlier_exports = since.data();
  o.earlier_export_count = since.size();
  // dala desk verify: no --out, nothing decrypted written; summary.json only where --summary says.
  const std::string summary = !a.summary.empty() ? a.summary : a.out.empty() ? "" : a.out + "/summary.json";
  Secret pass = ReadPassphrase(a.passphrase_file, "DALA_PASSPHRASE", "Desk passphrase: ", false);
  dala_credential cred = Passphrase(pass.value);
  Ref<dala_desk> desk;
  Call(dala_desk_open, a.key.c_str(), &cred, Out(desk));
  dala_desk_summary sum;
  Call(dala_desk_open_export, desk.get(), a.from.c_str(), a.out.empty() ? nullptr : a.out.c_str(), &o, &sum);
  const bool clean = sum.failed == 0 && sum.duplicates == 0 && sum.reordered == 0 && sum.unknown_fields == 0 &&
                     sum.missing == 0 && sum.phone_receipts_invalid == 0 && sum.log_problems == 0 &&
                     sum.timestamp_problems == 0;
  if (a.json) {
    PrintJson({{"reports", sum.reports}, {"verified", sum.verified}, {"failed", sum.failed},
               {"duplicates", sum.duplicates}, {"reordered", sum.reordered}, {"unknown_fields", sum.unknown_fields},
               {"missing", sum.missing}, {"phone_receipts", receipts.bytes.size()},
               {"phone_receipts_invalid", sum.phone_receipts_invalid}, {"log_problems", sum.log_problems},
               {"timestamps", sum.timestamps}, {"timestamp_problems", sum.timestamp_problems},
               {"clean", clean},
               {"summary", summary.empty() ? nlohmann::json() : nlohmann::json(summary)}});
  } else if (sum.reports == 0 && clean) {
    std::fprintf(stderr, "dala: the export %s holds no reports: nothing to open\n", a.from.c_str());
  } else {
    std::printf("%llu reports: %llu verified, %llu failed (%s%s)\n", (unsigned long long)sum.reports,
                (unsigned long long)sum.verified, (unsigned long long)sum.failed,
                summary.empty() ? "details with --summary FILE" : "details in ", summary.c_str());
    if (!clean)
      std::printf("the export was altered or is incomplete: %llu missing, %llu duplicated, %llu out of order, "
                  "%llu hidden-field places, %llu phone receipts that do not verify, %llu log problems, %llu "
                  "time-stamp problems\n",
                  (unsigned long long)sum.missing, (unsigned long long)sum.duplicates,
                  (unsigned long long)sum.reordered, (unsigned long long)sum.unknown_fields,
                  (unsigned long long)sum.phone_receipts_invalid, (unsigned long long)sum.log_problems,
                  (unsigned long long)sum.timestamp_problems);
    if (sum.timestamps > 0)
      std::printf("%llu time-stamps of the server's log verified\n", (unsigned long long)sum.timestamps);
  }
  *rc = sum.reports == 0 && clean ? kExitNotFound : clean ? kExitOk : kExitError;
}

struct LogArgs {
  std::string organisation, from, tsa_cert;
  std::vector<std::string> receipts, statements;
  bool json = false;
};

void LogVerify(const LogArgs& a, int* rc) {
  if (a.from.empty() && a.receipts.empty()) throw UsageError{"give an export (--from) or phone receipts (--receipts)"};
  const PhoneReceipts receipts = ReadPhoneReceipts(a.receipts);
  std::vector<const char*> statements;
  for (const auto& f : a.statements) statements.push_back(f.c_str());
  dala_desk_log_options o;
  dala_desk_log_options_init(&o);
  if (!a.from.empty()) o.export_path = a.from.c_str();
  o.receipts = receipts.ptrs.data();
  o.receipt_sizes = receipts.sizes.data();
  o.receipt_count = receipts.ptrs.size();
  o.statement_paths = statements.data();
  o.statement_count = statements.size();
  if (!a.tsa_cert.empty()) o.tsa_cert_path = a.tsa_cert.c_str();
  char* out = nullptr;
  Call(dala_desk_verify_log, a.organisation.c_str(), &o, &out);
  const nlohmann::json v = nlohmann::json::parse(TakeString(out));
  if (a.json) {
    std::printf("%s\n", v.dump().c_str());
  } else {
    if (!a.from.empty())
      std::printf("log of server %s: %llu leaves, signed head of %llu leaves\n", v["server_key"].get<std::string>().c_str(),
                  v["leaves"].get<unsigned long long>(), v["head_size"].get<unsigned long long>());
    if (!a.receipts.empty())
      std::printf("%llu of %llu phone receipts at their proven place in the log\n",
                  v["receipts_in_log"].get<unsigned long long>(), v["receipts"].get<unsigned long long>());
    if (v["timestamps"].get<unsigned long long>() > 0)
      std::printf("%llu time-stamps verified\n", v["timestamps"].get<unsigned long long>());
    for (const auto& p : v["problems"]) std::printf("problem: %s\n", p.get<std::string>().c_str());
    std::printf("%s\n", v["ok"].get<bool>() ? "verified" : "NOT verified");
  }
  *rc = v["ok"].get<bool>() ? kExitOk : kExitError;
}

}  // namespace

void AddLogCommands(CLI::App& app, int* rc) {
  CLI::App* log = app.add_subcommand("log", "a server's log, checked with the organisation's public identity alone")
                      ->require_subcommand(1);
  auto a = std::make_shared<LogArgs>();
  CLI::App* c = log->add_subcommand("verify", "checks an export's log and phones' receipts against the organisation's "
                                              "identity (no key file): exit 1 if anything fails");
  c->add_option("--organisation", a->organisation, "the organisation's identity (the line dala desk keygen prints)")
      ->required();
  c->add_option("--from", a->from, "a dala-server export");
  c->add_option("--receipts", a->receipts, "receipts a phone kept (dala receipts --json); repeat")
      ->allow_extra_args(false);
  c->add_option("--statement", a->statements, "a newer statement of the organisation (dala desk statement); repeat")
      ->allow_extra_args(false);
  c->add_option("--tsa-cert", a->tsa_cert, "PEM certificates trusted for time: the log's time-stamps are checked");
  c->add_flag("--json", a->json, "the verdict as JSON on stdout");
  c->callback([a, rc] { LogVerify(*a, rc); });
}

void AddDeskCommands(CLI::App& app, int* rc) {
  CLI::App* desk = app.add_subcommand("desk", "the organisation's desk: its key, and opening exports")
                       ->require_subcommand(1);
  struct KeygenArgs {
    std::string out, passphrase_file, name;
    KdfArgs kdf;
  };
  auto keygen = std::make_shared<KeygenArgs>();
  CLI::App* c = desk->add_subcommand("keygen", "writes a new organisation key file; prints the organisation's identity");
  c->add_option("--out", keygen->out, "the key file to write (must not exist)")->required();
  c->add_option("--name", keygen->name, "the organisation's name, which phones show beside its fingerprint");
  c->add_option("--passphrase-file", keygen->passphrase_file,
                "read the desk passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
  AddKdfOptions(c, keygen->kdf);
  c->callback([keygen, rc] {
    Secret pass = ReadPassphrase(keygen->passphrase_file, "DALA_PASSPHRASE", "New desk passphrase: ", true);
    dala_credential cred = Passphrase(pass.value);
    dala_desk_options opts;
    dala_desk_options_init(&opts);
    if (keygen->kdf.ops) opts.kdf_opslimit = keygen->kdf.ops;
    if (keygen->kdf.mem_mib) opts.kdf_memlimit = keygen->kdf.mem_mib << 20;
    opts.name = keygen->name.c_str();
    char* identity = nullptr;
    Call(dala_desk_keygen, keygen->out.c_str(), &cred, &opts, &identity);
    std::string id = TakeString(identity);
    Ref<dala_desk> d;
    Call(dala_desk_open, keygen->out.c_str(), &cred, Out(d));
    char* fp = nullptr;
    Call(dala_desk_get_fingerprint, d.get(), &fp);
    std::fprintf(stderr, "Organisation key written to %s (fingerprint %s). Keep it and its passphrase safe: "
                 "whoever holds both speaks for the organisation.\n", keygen->out.c_str(), TakeString(fp).c_str());
    std::printf("%s\n", id.c_str());
    *rc = kExitOk;
  });

  struct InviteArgs {
    std::string key, passphrase_file, server_key, expires = "7d", tls_pin, qr;
    std::vector<std::string> urls;
    uint32_t uses = 1;
    bool equivalent = false, qr_terminal = false;
  };
  auto invite = std::make_shared<InviteArgs>();
  c = desk->add_subcommand("invite", "prints a new invite to one of the organisation's servers, signed by its key");
  c->add_option("--key", invite->key, "the organisation key file")->required();
  c->add_option("--server-key", invite->server_key, "the server's key (64 hex; dala-server init prints it)")->required();
  c->add_option("--url", invite->urls, "an address phones dial: http(s)://HOST:PORT[/PATH]; repeat for several")
      ->required()->allow_extra_args(false);
  c->add_option("--uses", invite->uses, "how many phones may join with it (default 1)")->check(CLI::PositiveNumber);
  c->add_option("--expires", invite->expires, "how long it is valid: 30m, 12h, 7d (default 7d)");
  c->add_option("--tls-pin", invite->tls_pin, "pin the server's certificate key (64 hex; dala-server pin prints it)");
  c->add_flag("--addresses-equivalent", invite->equivalent,
              "phones may fall back from any address to any other (else only to ones no weaker: onion, https, http)");
  c->add_option("--passphrase-file", invite->passphrase_file,
                "read the desk passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
  c->add_option("--qr", invite->qr, "also write the invite as a QR code, a PNG for phones to scan (replaced if it exists)")
      ->option_text("FILE.png");
  c->add_flag("--qr-terminal", invite->qr_terminal,
              "also draw the invite's QR code on stderr, for a phone to scan from the screen");
  c->callback([invite, rc] {
    for (const auto& u : invite->urls) CheckServerUrl(u);
    int64_t ttl = DurationMs(invite->expires);
    dala_desk_invite_options o;
    dala_desk_invite_options_init(&o);
    FromHex32(invite->server_key, o.server_key, "--server-key");
    uint8_t pin[32];
    if (!invite->tls_pin.empty()) {
      FromHex32(invite->tls_pin, pin, "--tls-pin");
      o.tls_pin = pin;
    }
    std::vector<const char*> urls;
    for (const auto& u : invite->urls) urls.push_back(u.c_str());
    o.urls = urls.data();
    o.url_count = urls.size();
    o.addresses_equivalent = invite->equivalent ? 1 : 0;
    o.uses = invite->uses;
    o.expires_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count() + ttl;
    Secret pass = ReadPassphrase(invite->passphrase_file, "DALA_PASSPHRASE", "Desk passphrase: ", false);
    dala_credential cred = Passphrase(pass.value);
    Ref<dala_desk> d;
    Call(dala_desk_open, invite->key.c_str(), &cred, Out(d));
    // A --qr path that cannot be written fails here, before the invite is made (the first one to a
    // server authorises its key in the key file), and leaves no file behind.
    std::optional<QrPngFile> png;
    if (!invite->qr.empty()) png.emplace(invite->qr);
    char* raw = nullptr;
    Call(dala_desk_create_invite, d.get(), &o, &raw);
    std::string text = TakeString(raw);
    if (png || invite->qr_terminal) {
      QrCode qr(text);
      if (png) png->Commit(qr);
      if (invite->qr_terminal) ShowTerminalQr(qr);
    }
    std::printf("%s\n", text.c_str());  // the invite on stdout, as without a QR code
    *rc = kExitOk;
  });

  // The organisation's statement: rotate the recipient key, revoke a server key, write it for the servers.
  struct StatementArgs {
    std::string key, passphrase_file, server_key, out;
  };
  auto st = std::make_shared<StatementArgs>();
  auto with_desk = [](const StatementArgs& a, auto fn) {
    Secret pass = ReadPassphrase(a.passphrase_file, "DALA_PASSPHRASE", "Desk passphrase: ", false);
    dala_credential cred = Passphrase(pass.value);
    Ref<dala_desk> d;
    Call(dala_desk_open, a.key.c_str(), &cred, Out(d));
    fn(d.get());
  };
  c = desk->add_subcommand("rotate", "a new recipient key from now on (then: dala desk statement, dala-server statement)");
  c->add_option("--key", st->key, "the organisation key file")->required();
  c->add_option("--passphrase-file", st->passphrase_file, "read the desk passphrase from FILE");
  c->callback([st, rc, with_desk] {
    with_desk(*st, [](dala_desk* d) { Call(dala_desk_rotate_recipients, d); });
    std::fprintf(stderr, "New recipient key in the statement. Give it to the servers: dala desk statement, then "
                         "dala-server statement.\n");
    *rc = kExitOk;
  });
  c = desk->add_subcommand("revoke-server", "revokes a server key from now on: its receipts are not believed");
  c->add_option("--key", st->key, "the organisation key file")->required();
  c->add_option("--server-key", st->server_key, "the server's key (64 hex)")->required();
  c->add_option("--passphrase-file", st->passphrase_file, "read the desk passphrase from FILE");
  c->callback([st, rc, with_desk] {
    uint8_t k[32];
    FromHex32(st->server_key, k, "--server-key");
    with_desk(*st, [&](dala_desk* d) { Call(dala_desk_revoke_server, d, k, int64_t{0}); });
    std::fprintf(stderr, "Server key revoked. Give the statement to the other servers and make new invites.\n");
    *rc = kExitOk;
  });
  c = desk->add_subcommand("statement", "writes the organisation's current statement (for dala-server statement)");
  c->add_option("--key", st->key, "the organisation key file")->required();
  c->add_option("--out", st->out, "the file to write")->required();
  c->add_option("--passphrase-file", st->passphrase_file, "read the desk passphrase from FILE");
  c->callback([st, rc, with_desk] {
    with_desk(*st, [&](dala_desk* d) { Call(dala_desk_write_statement, d, st->out.c_str()); });
    *rc = kExitOk;
  });

  auto common = [](CLI::App* cmd, OpenArgs& a) {
    cmd->add_option("--key", a.key, "the organisation key file")->required();
    cmd->add_option("--from", a.from, "the export (dala-server export --out)")->required();
    cmd->add_option("--passphrase-file", a.passphrase_file,
                    "read the desk passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
    cmd->add_option("--receipts", a.receipts,
                    "cross-check the receipts a phone kept (a file written by dala receipts --json); repeat")
        ->allow_extra_args(false);
    cmd->add_option("--since", a.since,
                    "an earlier export of the same server: its log must be a prefix of this one's; repeat")
        ->allow_extra_args(false);
    cmd->add_option("--tsa-cert", a.tsa_cert,
                    "PEM certificates trusted for time (a TSA's or its CA's): the log's RFC 3161 time-stamps are checked");
    cmd->add_flag("--json", a.json, "the summary as JSON on stdout");
  };
  auto open = std::make_shared<OpenArgs>();
  c = desk->add_subcommand("open", "decrypts and verifies a dala-server export: one JSON file per report");
  common(c, *open);
  c->add_option("--out", open->out, "the directory to write the reports and summary.json to")
      ->required()
      ->check([](const std::string& v) { return v.empty() ? std::string("must not be empty") : std::string(); });
  c->callback([open, rc] { DeskOpen(*open, rc); });
  auto verify = std::make_shared<OpenArgs>();
  c = desk->add_subcommand("verify", "every check of dala desk open, writing nothing decrypted (exit 1: a check failed)");
  common(c, *verify);
  c->add_option("--summary", verify->summary, "also write summary.json (ids and problems, no contents) to FILE");
  c->callback([verify, rc] { DeskOpen(*verify, rc); });
  AddDeskStoreCommands(desk, rc);
}

}  // namespace dala::cli
