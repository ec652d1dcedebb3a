#include "cli.h"

#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dala::cli {

Secret::~Secret() {
  volatile char* p = value.data();
  for (size_t i = 0; i < value.size(); ++i) p[i] = 0;
}

std::string ReadTextFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError{std::string("cannot read ") + what + " '" + path + "': " + std::strerror(errno)};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

void StripNewline(std::string& s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
}

Secret Prompt(const char* prompt) {
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
  Secret line;
  int c;
  while ((c = std::fgetc(tty)) != EOF && c != '\n') line.value.push_back(static_cast<char>(c));
  tcsetattr(fileno(tty), TCSAFLUSH, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  return line;
}

}  // namespace

Secret ReadPassphrase(const std::string& file, const char* env, const char* prompt, bool confirm) {
  Secret s;
  if (!file.empty()) {
    s.value = ReadTextFile(file, "passphrase file");
    StripNewline(s.value);
  } else if (const char* e = std::getenv(env)) {
    s.value = e;
  } else {
    s = Prompt(prompt);
    if (confirm && Prompt("Repeat the passphrase: ").value != s.value) throw UsageError{"the passphrases differ"};
  }
  if (s.value.empty()) throw UsageError{"the passphrase is empty"};
  return s;
}

void AddKdfOptions(CLI::App* cmd, KdfArgs& kdf) {
  cmd->add_option("--kdf-ops", kdf.ops, "Argon2id passes for a new passphrase (default 3)")->check(CLI::Range(1, 16));
  cmd->add_option("--kdf-mem-mib", kdf.mem_mib, "Argon2id memory in MiB for a new passphrase (default 64)")
      ->check(CLI::Range(8, 1024));
}

void AddStoreOptions(CLI::App* cmd, StoreArgs& store) {
  cmd->add_option("--store", store.dir, "the store directory")->required();
  cmd->add_option("--passphrase-file", store.passphrase_file,
                  "read the passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
  // The key file records no Argon2id cost (it records nothing readable): every command on a store made
  // with another cost must be given it again, here or in the environment.
  cmd->add_option("--kdf-ops", store.kdf.ops, "Argon2id passes of the store's passphrase (default 3; the same at every use)")
      ->envname("DALA_KDF_OPS")
      ->check(CLI::Range(1, 16));
  cmd->add_option("--kdf-mem-mib", store.kdf.mem_mib,
                  "Argon2id memory in MiB of the store's passphrase (default 64; the same at every use)")
      ->envname("DALA_KDF_MEM_MIB")
      ->check(CLI::Range(8, 1024));
}

dala_store_options StoreOptions(const StoreArgs& a) {
  dala_store_options opts;
  dala_store_options_init(&opts);
  if (a.kdf.ops) opts.kdf_opslimit = a.kdf.ops;
  if (a.kdf.mem_mib) opts.kdf_memlimit = a.kdf.mem_mib << 20;
  if (a.delete_after_delivery) opts.delete_after_delivery = 1;
  return opts;
}

Ref<dala_store> OpenStore(const StoreArgs& a, bool create) {
  Secret pass = ReadPassphrase(a.passphrase_file, "DALA_PASSPHRASE",
                               create ? "New store passphrase: " : "Store passphrase: ", create);
  dala_credential cred = Passphrase(pass.value);
  dala_store_options opts = StoreOptions(a);
  Ref<dala_store> s;
  if (create) Call(dala_store_create, a.dir.c_str(), &cred, &opts, Out(s));
  else Call(dala_store_open, a.dir.c_str(), &cred, &opts, Out(s));
  return s;
}

dala_report_id ParseReportId(const std::string& s) {
  dala_report_id id;
  ErrorSlot e;
  if (dala_report_id_parse(s.c_str(), &id, e.out()) != DALA_OK)
    throw UsageError{"'" + s + "' is not a report id (32 hexadecimal characters)"};
  return id;
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

std::string Hex(const uint8_t* b, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[b[i] >> 4];
    s += kDigits[b[i] & 15];
  }
  return s;
}

std::string SizeText(uint64_t n) {
  char buf[32];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / 1048576.0);
  return buf;
}

void PrintJson(const nlohmann::ordered_json& j) {
  std::string text = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
}

void FromHex32(const std::string& hex, uint8_t out[32], const char* what) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() != 64) throw UsageError{std::string(what) + " must be 64 hexadecimal characters"};
  for (size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) throw UsageError{std::string(what) + " must be 64 hexadecimal characters"};
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
}

}  // namespace dala::cli
