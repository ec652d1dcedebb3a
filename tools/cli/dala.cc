// dala: the command-line front end. It uses the public C API only (dala/dala.h), like any app.
// Exit codes: 0 success, 1 other error, 2 usage or invalid input, 3 wrong passphrase or key,
// 4 no such store or report.
#include <dala/dala.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"

namespace {

using cli::Args;
using cli::UsageError;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitWrongKey = 3, kExitNotFound = 4, kExitLater = 5;

const char kUsage[] = R"(usage: dala COMMAND [OPTIONS]

Stores:
  dala init --store DIR [--kdf-ops N] [--kdf-mem-mib N] [--delete-after-delivery]
  dala passphrase change --store DIR      new passphrase from DALA_NEW_PASSPHRASE or --new-passphrase-file
  dala wipe --store DIR --yes             panic wipe: destroys the key first; no passphrase needed
  dala check --store DIR                  checks every database page
  dala recipients set --store DIR [--destination NAME] PUBKEY...   seal queued reports to these keys
  dala outbox --store DIR [--destination NAME] [--json]

Reports:
  dala report add --store DIR --form NAME/VERSION [--field KEY[:TYPE]=VALUE]... [--text TEXT | --text-file FILE]
                  [--location LAT,LON[,ACCURACY_M]] [--priority N] [--attach FILE]... [--seal]
                                          prints the new report id; attachments are encrypted as they are read
  dala report edit --store DIR ID [--field ...]... [--remove-field KEY]... [--text ... | --text-file ...]
                  [--attach FILE]... [--seal]
  dala report seal --store DIR ID
  dala report show --store DIR ID [--version N] [--json]
  dala report list --store DIR [--json]
  dala report delete --store DIR ID       deletes the draft version (and its attachments)
  dala attachment get --store DIR ATTACHMENT-ID --out FILE   decrypts one attachment (verified) to FILE

Delivery:
  dala join --store DIR INVITE            records the organisation's server; reports are sealed to it at once
  dala sync --store DIR [--timeout SECONDS] [--now]
                                              sends what is due (--now: all queued, whatever its backoff);
                                              exit 0: nothing left, 5: work remains
  dala receipts --store DIR [--json]      the server's signed receipts kept on this phone

Organisation desk:
  dala desk keygen --out FILE             prints the organisation's public key
  dala desk open --key FILE --from EXPORT --out DIR   decrypts and verifies a dala-server export

Field types (default text): text, int, dec, bool (true/false), time (Unix ms or YYYY-MM-DDTHH:MM[:SS]Z),
  geo (LAT,LON[,ACCURACY_M]), person (NAME or NAME|ROLE; repeat the key to add people).

Passphrase: DALA_PASSPHRASE, or --passphrase-file FILE, or a prompt on the terminal.
Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 wrong passphrase or key, 4 no such store or report,
5 (sync) work remains for later: offline, server down, or waiting to retry.
)";

// A failed library call: the message plus the exit code for its status.
struct Failure {
  dala_status status;
  std::string message;
};

class Error {
 public:
  ~Error() { dala_error_free(e_); }
  dala_error** out() { return &e_; }
  void Check(dala_status st) {
    if (st != DALA_OK) throw Failure{st, e_ ? dala_error_message(e_) : dala_status_name(st)};
  }

 private:
  dala_error* e_ = nullptr;
};

int ExitCodeFor(dala_status st) {
  switch (st) {
    case DALA_ERR_WRONG_KEY: return kExitWrongKey;
    case DALA_ERR_NOT_FOUND: return kExitNotFound;
    case DALA_ERR_INVALID_ARGUMENT:
    case DALA_ERR_TOO_LARGE: return kExitUsage;
    default: return kExitError;
  }
}

std::string ReadTextFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError{std::string("cannot read ") + what + " '" + path + "': " + std::strerror(errno)};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A secret string whose memory is wiped when it goes.
struct Secret {
  std::string value;
  ~Secret() {
    volatile char* p = value.data();
    for (size_t i = 0; i < value.size(); ++i) p[i] = 0;
  }
};

void StripNewline(std::string& s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
}

std::string Prompt(const char* prompt) {
  FILE* tty = std::fopen("/dev/tty", "r+");
  if (tty == nullptr || !isatty(fileno(tty))) {
    if (tty) std::fclose(tty);
    throw UsageError{"no passphrase: set DALA_PASSPHRASE, use --passphrase-file FILE, or run on a terminal"};
  }
  std::fputs(prompt, tty);
  std::fflush(tty);
  termios old{}, quiet{};
  tcgetattr(fileno(tty), &old);
  quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
  std::string line;
  int c;
  while ((c = std::fgetc(tty)) != EOF && c != '\n') line.push_back(static_cast<char>(c));
  tcsetattr(fileno(tty), TCSAFLUSH, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  return line;
}

Secret Passphrase(const Args& a, const char* env, const char* file_opt, const char* prompt, bool confirm) {
  Secret s;
  if (auto f = a.get(file_opt)) {
    s.value = ReadTextFile(*f, "passphrase file");
    StripNewline(s.value);
  } else if (const char* e = std::getenv(env)) {
    s.value = e;
  } else {
    s.value = Prompt(prompt);
    if (confirm) {
      Secret again{Prompt("Repeat the passphrase: ")};
      if (again.value != s.value) throw UsageError{"the passphrases differ"};
    }
  }
  if (s.value.empty()) throw UsageError{"the passphrase is empty"};
  return s;
}

dala_credential Cred(const Secret& s) {
  return dala_credential{DALA_CREDENTIAL_PASSPHRASE, reinterpret_cast<const uint8_t*>(s.value.data()), s.value.size()};
}

uint64_t ParseUint(const std::string& s, const char* what) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || s[0] == '-') throw UsageError{std::string(what) + " must be a whole number"};
  return v;
}

int64_t ParseInt(const std::string& s, const char* what) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0) throw UsageError{std::string(what) + " must be an integer"};
  return v;
}

dala_geo ParseGeo(const std::string& s) {
  dala_geo g{0, 0, 0};
  char extra = 0;
  int n = std::sscanf(s.c_str(), "%lf,%lf,%lf%c", &g.latitude, &g.longitude, &g.accuracy_m, &extra);
  if (n != 2 && n != 3) throw UsageError{"a location is LAT,LON or LAT,LON,ACCURACY_M"};
  return g;
}

int64_t ParseTime(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("-0123456789") == std::string::npos) return ParseInt(s, "a time");
  std::tm tm{};
  int sec = 0;
  char z = 0, extra = 0;
  int n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                      &tm.tm_min, &sec, &z, &extra);
  if (n != 7 || z != 'Z') {
    sec = 0;
    n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &z, &extra);
    if (n != 6 || z != 'Z') throw UsageError{"a time is Unix milliseconds or YYYY-MM-DDTHH:MM[:SS]Z"};
  }
  tm.tm_sec = sec;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::string FormatTime(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class Store {
 public:
  Store(const Args& a, bool create) {
    std::string dir = a.need("store");
    Secret pass = Passphrase(a, "DALA_PASSPHRASE", "passphrase-file",
                             create ? "New store passphrase: " : "Store passphrase: ", create);
    dala_credential cred = Cred(pass);
    dala_store_options opts;
    dala_store_options_init(&opts);
    if (auto v = a.get("kdf-ops")) opts.kdf_opslimit = ParseUint(*v, "--kdf-ops");
    if (auto v = a.get("kdf-mem-mib")) opts.kdf_memlimit = ParseUint(*v, "--kdf-mem-mib") << 20;
    if (a.flag("delete-after-delivery")) opts.delete_after_delivery = 1;
    Error e;
    e.Check(create ? dala_store_create(dir.c_str(), &cred, &opts, &s_, e.out())
                   : dala_store_open(dir.c_str(), &cred, &opts, &s_, e.out()));
  }
  ~Store() { dala_store_close(s_); }
  dala_store* get() { return s_; }

 private:
  dala_store* s_ = nullptr;
};

struct Report {
  dala_report* r = nullptr;
  ~Report() { dala_report_free(r); }
};

dala_report_id ParseId(const std::string& s) {
  dala_report_id id;
  dala_error* e = nullptr;
  if (dala_report_id_parse(s.c_str(), &id, &e) != DALA_OK) {
    dala_error_free(e);
    throw UsageError{"'" + s + "' is not a report id (32 hexadecimal characters)"};
  }
  return id;
}

std::string IdString(const dala_report_id& id) {
  char buf[33];
  dala_report_id_to_string(&id, buf);
  return buf;
}

// Applies --field / --remove-field (in order), --text / --text-file, --location and --priority.
void ApplyEdits(dala_report* r, const Args& a) {
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> people;  // key -> (name, role)
  for (const auto& [kind, spec] : a.ordered) {
    if (kind != "field" && kind != "remove-field") continue;
    Error e;
    if (kind == "remove-field") {
      e.Check(dala_report_remove_field(r, spec.c_str(), e.out()));
      continue;
    }
    auto eq = spec.find('=');
    if (eq == std::string::npos) throw UsageError{"a field is KEY=VALUE or KEY:TYPE=VALUE"};
    std::string key = spec.substr(0, eq), value = spec.substr(eq + 1), type = "text";
    if (auto colon = key.find(':'); colon != std::string::npos) {
      type = key.substr(colon + 1);
      key = key.substr(0, colon);
    }
    if (type == "text") e.Check(dala_report_set_text(r, key.c_str(), value.c_str(), e.out()));
    else if (type == "int") e.Check(dala_report_set_integer(r, key.c_str(), ParseInt(value, "an int field"), e.out()));
    else if (type == "dec") e.Check(dala_report_set_decimal(r, key.c_str(), value.c_str(), e.out()));
    else if (type == "bool") {
      if (value != "true" && value != "false") throw UsageError{"a bool field is true or false"};
      e.Check(dala_report_set_boolean(r, key.c_str(), value == "true", e.out()));
    } else if (type == "time") e.Check(dala_report_set_timestamp(r, key.c_str(), ParseTime(value), e.out()));
    else if (type == "geo") {
      dala_geo g = ParseGeo(value);
      e.Check(dala_report_set_geo(r, key.c_str(), &g, e.out()));
    } else if (type == "person") {
      auto bar = value.find('|');
      people[key].emplace_back(value.substr(0, bar), bar == std::string::npos ? "" : value.substr(bar + 1));
    } else {
      throw UsageError{"unknown field type '" + type + "' (text, int, dec, bool, time, geo, person)"};
    }
  }
  for (const auto& [key, list] : people) {
    std::vector<dala_person> ps;
    for (const auto& [name, role] : list) ps.push_back({name.c_str(), role.c_str()});
    Error e;
    e.Check(dala_report_set_people(r, key.c_str(), ps.data(), ps.size(), e.out()));
  }
  if (a.flag("text") && a.flag("text-file")) throw UsageError{"give --text or --text-file, not both"};
  std::optional<std::string> text = a.get("text");
  if (auto f = a.get("text-file")) text = ReadTextFile(*f, "text file");
  if (text) {
    Error e;
    e.Check(dala_report_set_narrative(r, text->c_str(), e.out()));
  }
  if (auto loc = a.get("location")) {
    dala_geo g = ParseGeo(*loc);
    Error e;
    e.Check(dala_report_set_location(r, &g, e.out()));
  }
  if (auto p = a.get("priority")) {
    Error e;
    e.Check(dala_report_set_priority(r, static_cast<int32_t>(ParseInt(*p, "--priority")), e.out()));
  }
}

void SaveOrSeal(dala_store* s, dala_report* r, bool seal) {
  Error e;
  e.Check(seal ? dala_report_seal(s, r, e.out()) : dala_report_save(s, r, e.out()));
}

std::string Arg1(const Args& a, size_t index, const char* what) {
  if (a.words.size() <= index) throw UsageError{std::string("missing ") + what};
  if (a.words.size() > index + 1) throw UsageError{"unexpected argument '" + a.words[index + 1] + "'"};
  return a.words[index];
}

std::string Hex(const uint8_t* b, size_t n) {
  std::string s;
  char buf[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
  }
  return s;
}

// A MIME type from the file name; what is not known travels as application/octet-stream.
std::string GuessMime(const std::string& path) {
  static const std::pair<const char*, const char*> kKnown[] = {
      {".mp4", "video/mp4"}, {".mov", "video/quicktime"}, {".webm", "video/webm"}, {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"}, {".png", "image/png"}, {".heic", "image/heic"}, {".ogg", "audio/ogg"},
      {".opus", "audio/ogg"}, {".mp3", "audio/mpeg"}, {".m4a", "audio/mp4"}, {".aac", "audio/aac"},
      {".pdf", "application/pdf"}, {".txt", "text/plain"}};
  auto dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [e, m] : kKnown)
    if (ext == e) return m;
  return "application/octet-stream";
}

// --attach FILE...: each file streamed into the draft, encrypted as it is read.
void Attach(dala_store* s, const dala_report_id& id, const Args& a) {
  for (const auto& [name, value] : a.ordered) {
    if (name != "attach") continue;
    dala_attachment_id aid;
    Error e;
    e.Check(dala_attachment_import_file(s, &id, value.c_str(), GuessMime(value).c_str(), &aid, e.out()));
  }
}

std::string SizeText(uint64_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  return buf;
}

void PrintAttachments(dala_store* s, dala_report* r) {
  dala_report_id id;
  dala_report_get_id(r, &id);
  dala_attachment_list* list = nullptr;
  Error e;
  e.Check(dala_store_list_attachments(s, &id, &list, e.out()));
  bool header = false;
  for (size_t i = 0; i < dala_attachment_list_count(list); ++i) {
    dala_attachment_info info;
    Error ie;
    ie.Check(dala_attachment_list_get(list, i, &info, ie.out()));
    if (info.version > dala_report_version(r)) continue;  // added to a later version
    if (!header) std::printf("attachments:\n");
    header = true;
    char aid[33];
    dala_attachment_id_to_string(&info.id, aid);
    std::printf("  %s  %-24s %10s  plaintext %s\n", aid, info.mime_type, SizeText(info.size).c_str(),
                Hex(info.plaintext_hash, 32).substr(0, 16).c_str());
  }
  dala_attachment_list_free(list);
}

void PrintReport(dala_report* r) {
  dala_report_id id;
  dala_report_get_id(r, &id);
  std::printf("id:        %s\nversion:   %u\nform:      %s\nstate:     %s\ncreated:   %s\n", IdString(id).c_str(),
              dala_report_version(r), dala_report_form(r), dala_report_state_name(dala_report_state_of(r)),
              FormatTime(dala_report_created_ms(r)).c_str());
  if (dala_report_is_purged(r)) {
    std::printf("content:   deleted after delivery\n");
    return;
  }
  uint8_t dev[32], hash[32], prev[32];
  dala_error* e = nullptr;
  if (dala_report_seal_info(r, dev, hash, prev, &e) == DALA_OK) {
    auto hex = [](const uint8_t* b) { return Hex(b, 32); };
    std::printf("signed by: %s\nhash:      %s\n", hex(dev).c_str(), hex(hash).c_str());
    if (dala_report_version(r) > 1) std::printf("previous:  %s\n", hex(prev).c_str());
  }
  dala_error_free(e);
  for (size_t i = 0; i < dala_report_field_count(r); ++i) {
    const char* key = dala_report_field_key(r, i);
    std::printf("  %s: ", key);
    Error fe;
    switch (dala_report_field_type(r, i)) {
      case DALA_FIELD_TEXT: case DALA_FIELD_DECIMAL: {
        const char* v = nullptr;
        if (dala_report_field_type(r, i) == DALA_FIELD_TEXT) fe.Check(dala_report_get_text(r, key, &v, fe.out()));
        else fe.Check(dala_report_get_decimal(r, key, &v, fe.out()));
        std::printf("%s\n", v);
        break;
      }
      case DALA_FIELD_INTEGER: {
        int64_t v = 0;
        fe.Check(dala_report_get_integer(r, key, &v, fe.out()));
        std::printf("%lld\n", static_cast<long long>(v));
        break;
      }
      case DALA_FIELD_BOOLEAN: {
        int v = 0;
        fe.Check(dala_report_get_boolean(r, key, &v, fe.out()));
        std::printf("%s\n", v ? "true" : "false");
        break;
      }
      case DALA_FIELD_TIMESTAMP: {
        int64_t v = 0;
        fe.Check(dala_report_get_timestamp(r, key, &v, fe.out()));
        std::printf("%s\n", FormatTime(v).c_str());
        break;
      }
      case DALA_FIELD_GEO: {
        dala_geo g;
        fe.Check(dala_report_get_geo(r, key, &g, fe.out()));
        std::printf("%.6f, %.6f (±%.0f m)\n", g.latitude, g.longitude, g.accuracy_m);
        break;
      }
      case DALA_FIELD_PEOPLE: {
        size_t n = 0;
        fe.Check(dala_report_get_people(r, key, nullptr, 0, &n, fe.out()));
        std::vector<dala_person> ps(n);
        Error fe2;
        fe2.Check(dala_report_get_people(r, key, ps.data(), n, &n, fe2.out()));
        for (size_t k = 0; k < n; ++k)
          std::printf("%s%s%s%s", k ? "; " : "", ps[k].name, ps[k].role[0] ? " — " : "", ps[k].role);
        std::printf("\n");
        break;
      }
    }
  }
  if (dala_report_narrative(r)[0] != '\0') std::printf("narrative:\n%s\n", dala_report_narrative(r));
}

int CmdInit(const Args& a) {
  Store s(a, /*create=*/true);
  std::fprintf(stderr, "Created an encrypted store in %s.\n", a.need("store").c_str());
  return kExitOk;
}

int CmdReport(const Args& a) {
  if (a.words.size() < 2) throw UsageError{"missing report command (add, edit, seal, show, list, delete)"};
  const std::string& sub = a.words[1];
  if (sub == "add") {
    if (a.words.size() > 2) throw UsageError{"unexpected argument '" + a.words[2] + "'"};
    std::string form = a.need("form");
    Store s(a, false);
    Report r;
    Error e;
    e.Check(dala_report_create(s.get(), form.c_str(), &r.r, e.out()));
    // The draft exists from here; a bad field below leaves an empty draft the user can edit or delete.
    dala_report_id id;
    dala_report_get_id(r.r, &id);
    try {
      ApplyEdits(r.r, a);
      Attach(s.get(), id, a);
      SaveOrSeal(s.get(), r.r, a.flag("seal"));
    } catch (...) {
      dala_report_delete_draft(s.get(), &id, nullptr);  // nothing half-written is left behind
      throw;
    }
    std::printf("%s\n", IdString(id).c_str());
    return kExitOk;
  }
  if (sub == "edit") {
    dala_report_id id = ParseId(Arg1(a, 2, "report id"));
    Store s(a, false);
    Report r;
    Error e;
    e.Check(dala_report_edit(s.get(), &id, &r.r, e.out()));
    ApplyEdits(r.r, a);
    Attach(s.get(), id, a);
    SaveOrSeal(s.get(), r.r, a.flag("seal"));
    std::printf("%s\n", IdString(id).c_str());
    std::fprintf(stderr, "Version %u is %s.\n", dala_report_version(r.r),
                 dala_report_state_name(dala_report_state_of(r.r)));
    return kExitOk;
  }
  if (sub == "seal") {
    dala_report_id id = ParseId(Arg1(a, 2, "report id"));
    Store s(a, false);
    Report r;
    Error e;
    e.Check(dala_report_get(s.get(), &id, &r.r, e.out()));
    if (dala_report_state_of(r.r) != DALA_REPORT_DRAFT) {
      std::fprintf(stderr, "dala: report %s version %u is already sealed; nothing to do\n", IdString(id).c_str(),
                   dala_report_version(r.r));
      return kExitOk;
    }
    Error e2;
    e2.Check(dala_report_seal(s.get(), r.r, e2.out()));
    std::fprintf(stderr, "Sealed version %u (%s).\n", dala_report_version(r.r),
                 dala_report_state_name(dala_report_state_of(r.r)));
    return kExitOk;
  }
  if (sub == "show") {
    dala_report_id id = ParseId(Arg1(a, 2, "report id"));
    Store s(a, false);
    Report r;
    Error e;
    if (auto v = a.get("version"))
      e.Check(dala_report_get_version(s.get(), &id, static_cast<uint32_t>(ParseUint(*v, "--version")), &r.r, e.out()));
    else
      e.Check(dala_report_get(s.get(), &id, &r.r, e.out()));
    if (a.flag("json")) {
      char* json = nullptr;
      Error je;
      je.Check(dala_report_to_json(r.r, &json, je.out()));
      std::printf("%s\n", json);
      dala_string_free(json);
    } else {
      PrintReport(r.r);
      if (!dala_report_is_purged(r.r)) PrintAttachments(s.get(), r.r);
    }
    return kExitOk;
  }
  if (sub == "list") {
    if (a.words.size() > 2) throw UsageError{"unexpected argument '" + a.words[2] + "'"};
    Store s(a, false);
    dala_report_list* list = nullptr;
    Error e;
    e.Check(dala_store_list_reports(s.get(), &list, e.out()));
    size_t n = dala_report_list_count(list);
    bool json = a.flag("json");
    if (json) std::printf("[");
    for (size_t i = 0; i < n; ++i) {
      dala_report_info info;
      Error ie;
      ie.Check(dala_report_list_get(list, i, &info, ie.out()));
      // ids are hex and forms are [a-z0-9_.-]/digits: nothing here needs JSON escaping.
      if (json)
        std::printf("%s{\"id\":\"%s\",\"version\":%u,\"form\":\"%s\",\"state\":\"%s\",\"created\":%lld,\"updated\":%lld}",
                    i ? "," : "", IdString(info.id).c_str(), info.version, info.form,
                    dala_report_state_name(info.state), static_cast<long long>(info.created_ms),
                    static_cast<long long>(info.updated_ms));
      else
        std::printf("%s  v%-3u %-9s  %s  %s\n", IdString(info.id).c_str(), info.version,
                    dala_report_state_name(info.state), FormatTime(info.created_ms).c_str(), info.form);
    }
    if (json) std::printf("]\n");
    dala_report_list_free(list);
    return kExitOk;
  }
  if (sub == "delete") {
    dala_report_id id = ParseId(Arg1(a, 2, "report id"));
    Store s(a, false);
    Error e;
    e.Check(dala_report_delete_draft(s.get(), &id, e.out()));
    return kExitOk;
  }
  throw UsageError{"unknown report command '" + sub + "'"};
}

int CmdPassphrase(const Args& a) {
  if (a.words.size() != 2 || a.words[1] != "change") throw UsageError{"usage: dala passphrase change --store DIR"};
  std::string dir = a.need("store");
  Secret old_pass = Passphrase(a, "DALA_PASSPHRASE", "passphrase-file", "Current passphrase: ", false);
  Secret new_pass = Passphrase(a, "DALA_NEW_PASSPHRASE", "new-passphrase-file", "New passphrase: ", true);
  dala_credential oc = Cred(old_pass), nc = Cred(new_pass);
  dala_store_options opts;
  dala_store_options_init(&opts);
  if (auto v = a.get("kdf-ops")) opts.kdf_opslimit = ParseUint(*v, "--kdf-ops");
  if (auto v = a.get("kdf-mem-mib")) opts.kdf_memlimit = ParseUint(*v, "--kdf-mem-mib") << 20;
  Error e;
  e.Check(dala_store_change_credential(dir.c_str(), &oc, &nc, &opts, e.out()));
  std::fprintf(stderr, "Passphrase changed. The database was not rewritten.\n");
  return kExitOk;
}

int CmdWipe(const Args& a) {
  std::string dir = a.need("store");
  if (!a.flag("yes")) throw UsageError{"wipe destroys the store for good; add --yes to confirm"};
  Error e;
  e.Check(dala_store_wipe(dir.c_str(), e.out()));
  std::fprintf(stderr, "Store wiped: its key was destroyed and its files removed.\n");
  return kExitOk;
}

int CmdCheck(const Args& a) {
  Store s(a, false);
  Error e;
  e.Check(dala_store_check(s.get(), e.out()));
  std::fprintf(stderr, "The store is intact.\n");
  return kExitOk;
}

int CmdRecipients(const Args& a) {
  if (a.words.size() < 2 || a.words[1] != "set") throw UsageError{"usage: dala recipients set --store DIR PUBKEY..."};
  std::string dest = a.get("destination").value_or("default");
  std::vector<uint8_t> keys;
  for (size_t i = 2; i < a.words.size(); ++i) {
    const std::string& hex = a.words[i];
    if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw UsageError{"a public key is 64 hexadecimal characters"};
    for (size_t k = 0; k < 32; ++k) keys.push_back(static_cast<uint8_t>(std::stoul(hex.substr(2 * k, 2), nullptr, 16)));
  }
  Store s(a, false);
  Error e;
  e.Check(dala_store_set_recipients(s.get(), dest.c_str(), keys.data(), keys.size() / 32, e.out()));
  std::fprintf(stderr, "%zu recipient key(s) set for destination '%s'; sealed reports are queued.\n", keys.size() / 32,
               dest.c_str());
  return kExitOk;
}

int CmdOutbox(const Args& a) {
  std::string dest = a.get("destination").value_or("default");
  Store s(a, false);
  dala_outbox_stats st;
  Error e;
  e.Check(dala_outbox_get_stats(s.get(), dest.c_str(), &st, e.out()));
  if (a.flag("json"))
    std::printf("{\"destination\":\"%s\",\"pending\":%llu,\"in_flight\":%llu,\"delivered\":%llu,\"rejected\":%llu}\n",
                dest.c_str(), (unsigned long long)st.pending, (unsigned long long)st.in_flight,
                (unsigned long long)st.delivered, (unsigned long long)st.rejected);
  else
    std::printf("%s: %llu pending, %llu in flight, %llu delivered, %llu rejected\n", dest.c_str(),
                (unsigned long long)st.pending, (unsigned long long)st.in_flight, (unsigned long long)st.delivered,
                (unsigned long long)st.rejected);
  return kExitOk;
}

int CmdDesk(const Args& a) {
  if (a.words.size() == 2 && a.words[1] == "open") {
    std::string key = a.need("key"), from = a.need("from"), out = a.need("out");
    Secret pass = Passphrase(a, "DALA_PASSPHRASE", "passphrase-file", "Desk passphrase: ", false);
    dala_credential cred = Cred(pass);
    dala_desk* desk = nullptr;
    Error e;
    e.Check(dala_desk_open(key.c_str(), &cred, &desk, e.out()));
    dala_desk_summary sum;
    Error e2;
    dala_status st = dala_desk_open_export(desk, from.c_str(), out.c_str(), &sum, e2.out());
    dala_desk_close(desk);
    e2.Check(st);
    std::printf("%llu reports: %llu verified, %llu failed (details in %s/summary.json)\n",
                (unsigned long long)sum.reports, (unsigned long long)sum.verified, (unsigned long long)sum.failed,
                out.c_str());
    return sum.failed == 0 ? kExitOk : kExitError;
  }
  if (a.words.size() < 2 || a.words[1] != "keygen")
    throw UsageError{"usage: dala desk keygen --out FILE | dala desk open --key FILE --from EXPORT --out DIR"};
  std::string out = a.need("out");
  Secret pass = Passphrase(a, "DALA_PASSPHRASE", "passphrase-file", "New desk passphrase: ", true);
  dala_credential cred = Cred(pass);
  dala_store_options opts;
  dala_store_options_init(&opts);
  if (auto v = a.get("kdf-ops")) opts.kdf_opslimit = ParseUint(*v, "--kdf-ops");
  if (auto v = a.get("kdf-mem-mib")) opts.kdf_memlimit = ParseUint(*v, "--kdf-mem-mib") << 20;
  uint8_t pk[32];
  Error e;
  e.Check(dala_desk_keygen(out.c_str(), &cred, &opts, pk, e.out()));
  std::printf("%s\n", Hex(pk, 32).c_str());
  return kExitOk;
}

int CmdJoin(const Args& a) {
  std::string invite = Arg1(a, 1, "invite");
  Store s(a, false);
  char* dest = nullptr;
  Error e;
  e.Check(dala_store_join(s.get(), invite.c_str(), &dest, e.out()));
  std::fprintf(stderr, "Joined (destination %s). New and sealed reports are sealed to the organisation now; the "
                       "phone enrols at its first sync.\n", dest);
  dala_string_free(dest);
  return kExitOk;
}

void ShowProgress(void* ctx, const dala_sync_progress* p) {
  (void)ctx;
  std::string media;
  if (p->upload_total > 0)
    media = ", uploading " + SizeText(p->upload_done) + " of " + SizeText(p->upload_total) + " (" +
            std::to_string(p->upload_done * 100 / p->upload_total) + "%)";
  std::fprintf(stderr, "\r%s: %llu delivered, %llu left%s   ", p->destination, (unsigned long long)p->delivered,
               (unsigned long long)p->remaining, media.c_str());
  std::fflush(stderr);
}

int CmdSync(const Args& a) {
  dala_sync_options o;
  dala_sync_options_init(&o);
  if (auto t = a.get("timeout")) o.timeout_ms = static_cast<int64_t>(ParseUint(*t, "--timeout")) * 1000;
  if (o.timeout_ms <= 0) throw UsageError{"--timeout must be at least 1 second"};
  bool tty = isatty(fileno(stderr));
  if (tty) o.progress = ShowProgress;
  Store s(a, false);
  dala_server_list* servers = nullptr;
  Error le;
  le.Check(dala_store_list_servers(s.get(), &servers, le.out()));
  size_t n = dala_server_list_count(servers);
  dala_server_list_free(servers);
  if (n == 0) {
    std::fprintf(stderr, "dala: this store has not joined an organisation; run 'dala join' with an invite\n");
    return kExitError;
  }
  // Someone asked to sync now: what waited only because the network was down is due now; with --now,
  // everything queued, whatever its backoff.
  Error ne;
  ne.Check(a.flag("now") ? dala_store_retry_now(s.get(), ne.out()) : dala_store_notify_online(s.get(), ne.out()));
  dala_sync_result r;
  Error e;
  e.Check(dala_sync_run_once(s.get(), &o, &r, e.out()));
  if (tty) std::fprintf(stderr, "\n");
  std::fprintf(stderr, "%llu delivered, %llu rejected, %llu left%s\n", (unsigned long long)r.delivered,
               (unsigned long long)r.rejected, (unsigned long long)r.remaining,
               r.unreachable ? " (a server could not be reached; try again later)" : "");
  dala_server_list* after = nullptr;
  Error ae;
  ae.Check(dala_store_list_servers(s.get(), &after, ae.out()));
  for (size_t i = 0; i < dala_server_list_count(after); ++i) {
    dala_server_info info;
    Error ie;
    ie.Check(dala_server_list_get(after, i, &info, ie.out()));
    if (info.last_error[0] != '\0')
      std::fprintf(stderr, "%s (%s): %s\n", info.organisation[0] ? info.organisation : info.destination, info.url,
                   info.last_error);
  }
  dala_server_list_free(after);
  return r.remaining == 0 ? kExitOk : kExitLater;
}

int CmdAttachment(const Args& a) {
  if (a.words.size() < 2 || a.words[1] != "get")
    throw UsageError{"usage: dala attachment get --store DIR ATTACHMENT-ID --out FILE"};
  std::string text = Arg1(a, 2, "attachment id");
  dala_attachment_id id;
  Error pe;
  if (dala_attachment_id_parse(text.c_str(), &id, pe.out()) != DALA_OK)
    throw UsageError{"'" + text + "' is not an attachment id (32 hexadecimal characters)"};
  std::string out = a.need("out");
  if (std::FILE* existing = std::fopen(out.c_str(), "rb")) {
    std::fclose(existing);
    throw UsageError{"'" + out + "' already exists; give a new file"};
  }
  Store s(a, false);
  dala_attachment_reader* reader = nullptr;
  Error e;
  e.Check(dala_attachment_reader_open(s.get(), &id, &reader, e.out()));
  std::unique_ptr<dala_attachment_reader, void (*)(dala_attachment_reader*)> hold(reader, dala_attachment_reader_free);
  const std::string part = out + ".part";
  FILE* f = std::fopen(part.c_str(), "wbx");
  if (f == nullptr) throw UsageError{"cannot create '" + part + "': " + std::strerror(errno)};
  std::vector<uint8_t> buf(1u << 16);
  for (;;) {
    size_t n = 0;
    Error re;
    dala_status st = dala_attachment_reader_read(reader, buf.data(), buf.size(), &n, re.out());
    if (st != DALA_OK) {
      std::fclose(f);
      std::remove(part.c_str());  // nothing unverified is left behind
      re.Check(st);
    }
    if (n == 0) break;
    std::fwrite(buf.data(), 1, n, f);
  }
  if (std::fclose(f) != 0 || std::rename(part.c_str(), out.c_str()) != 0) {
    std::remove(part.c_str());
    throw UsageError{"cannot write '" + out + "'"};
  }
  return kExitOk;
}

int CmdReceipts(const Args& a) {
  Store s(a, false);
  dala_receipt_list* list = nullptr;
  Error e;
  e.Check(dala_store_list_receipts(s.get(), &list, e.out()));
  bool json = a.flag("json");
  if (json) std::printf("[");
  for (size_t i = 0; i < dala_receipt_list_count(list); ++i) {
    dala_receipt_info r;
    Error ie;
    ie.Check(dala_receipt_list_get(list, i, &r, ie.out()));
    if (json)
      std::printf("%s{\"id\":\"%s\",\"version\":%u,\"destination\":\"%s\",\"sequence\":%llu,"
                  "\"server_time\":%lld,\"verified\":%s}",
                  i ? "," : "", IdString(r.id).c_str(), r.version, r.destination, (unsigned long long)r.sequence,
                  (long long)r.server_time_ms, r.verified ? "true" : "false");
    else
      std::printf("%s  v%-3u #%-6llu %s  %s\n", IdString(r.id).c_str(), r.version, (unsigned long long)r.sequence,
                  FormatTime(r.server_time_ms).c_str(), r.verified ? "verified" : "NOT VERIFIED");
  }
  if (json) std::printf("]\n");
  dala_receipt_list_free(list);
  return kExitOk;
}

}  // namespace

const char* const kFlags[] = {"seal", "json", "yes", "delete-after-delivery", "help", "now"};
const char* const kValued[] = {"store", "form", "field", "text", "text-file", "passphrase-file",
                               "new-passphrase-file", "version", "remove-field", "out", "destination",
                               "kdf-ops", "kdf-mem-mib", "location", "priority", "timeout", "key", "from",
                               "attach"};

int main(int argc, char** argv) {
  try {
    Args a = cli::Parse(argc, argv, kFlags, kValued);
    if (a.flag("help") || a.words.empty() || a.words[0] == "help") {
      std::fputs(kUsage, a.words.empty() && !a.flag("help") ? stderr : stdout);
      return a.words.empty() && !a.flag("help") ? kExitUsage : kExitOk;
    }
    const std::string& cmd = a.words[0];
    if (cmd == "version") {
      std::printf("dala %s\n", dala_version());
      return kExitOk;
    }
    if (cmd == "init") return CmdInit(a);
    if (cmd == "report") return CmdReport(a);
    if (cmd == "passphrase") return CmdPassphrase(a);
    if (cmd == "wipe") return CmdWipe(a);
    if (cmd == "check") return CmdCheck(a);
    if (cmd == "recipients") return CmdRecipients(a);
    if (cmd == "outbox") return CmdOutbox(a);
    if (cmd == "desk") return CmdDesk(a);
    if (cmd == "join") return CmdJoin(a);
    if (cmd == "sync") return CmdSync(a);
    if (cmd == "receipts") return CmdReceipts(a);
    if (cmd == "attachment") return CmdAttachment(a);
    throw UsageError{"unknown command '" + cmd + "'"};
  } catch (const UsageError& u) {
    std::fprintf(stderr, "dala: %s\n(run 'dala --help' for usage)\n", u.message.c_str());
    return kExitUsage;
  } catch (const Failure& f) {
    std::fprintf(stderr, "dala: %s\n", f.message.c_str());
    return ExitCodeFor(f.status);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "dala: unexpected error: %s\n", ex.what());
    return kExitError;
  }
}
