// What the dala CLI's commands share: exit codes, passphrases, opening a store, parsing and printing.
// The CLI uses the public C APIs only (dala.h, desk.h), through dala.hh.
#pragma once

#include <dala/dala.hh>

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace CLI {
class App;
}

namespace dala::cli {

// docs/cli.md: 0 ok, 1 error, 2 usage or invalid input, 3 wrong passphrase or key, 4 no such store or
// report (or nothing to open), 5 (sync) work remains for later, 6 (sync) a report was rejected for good.
constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitWrongKey = 3, kExitNotFound = 4, kExitLater = 5,
              kExitRejected = 6;

struct UsageError {
  std::string message;
};

// A secret string whose memory is wiped when it goes.
struct Secret {
  std::string value;
  Secret() = default;
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& o) noexcept : value(std::move(o.value)) {}
  Secret& operator=(Secret&& o) noexcept {
    value.swap(o.value);  // o wipes what this held
    return *this;
  }
  ~Secret();
};

// From `file` if given, else the environment variable `env`, else a prompt on the terminal (twice when
// `confirm`). Refuses an empty passphrase.
Secret ReadPassphrase(const std::string& file, const char* env, const char* prompt, bool confirm);

struct KdfArgs {
  uint64_t ops = 0, mem_mib = 0;  // 0: the library's default
};
void AddKdfOptions(CLI::App* cmd, KdfArgs& kdf);

struct StoreArgs {
  std::string dir, passphrase_file;
  KdfArgs kdf;
  bool delete_after_delivery = false;
};
// --store DIR (required) and --passphrase-file FILE.
void AddStoreOptions(CLI::App* cmd, StoreArgs& store);
Ref<dala_store> OpenStore(const StoreArgs& args, bool create);
dala_store_options StoreOptions(const StoreArgs& args);  // the cost and policy the arguments give

dala_report_id ParseReportId(const std::string& text);
int64_t ParseInt(const std::string& s, const char* what);
dala_geo ParseGeo(const std::string& s);
int64_t ParseTime(const std::string& s);
std::string FormatTime(int64_t ms);
std::string Hex(const uint8_t* bytes, size_t n);
// 64 hex digits into 32 bytes; UsageError naming `what` otherwise.
void FromHex32(const std::string& hex, uint8_t out[32], const char* what);
std::string SizeText(uint64_t n);
std::string ReadTextFile(const std::string& path, const char* what);

// One JSON document on stdout: valid for any content (invalid UTF-8 is replaced, never passed through).
void PrintJson(const nlohmann::ordered_json& j);

// Each file registers its commands; a command's callback sets *exit_code.
void AddStoreCommands(CLI::App& app, int* exit_code);
void AddReportCommands(CLI::App& app, int* exit_code);
void AddDeliveryCommands(CLI::App& app, int* exit_code);
void AddDeskCommands(CLI::App& app, int* exit_code);
void AddDeskStoreCommands(CLI::App* desk, int* exit_code);  // under dala desk
void AddVerifyCommand(CLI::App& app, int* exit_code);           // dala verify PACKAGE
void AddLogCommands(CLI::App& app, int* exit_code);

}  // namespace dala::cli
