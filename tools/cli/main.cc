// dala: the command-line front end, on CLI11. Each command is in a cmd_*.cc file; exit codes in cli.h and
// docs/cli.md. It uses the public C APIs only (dala.h, desk.h), like any app.
#include <sodium.h>
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli.h"

namespace {

using namespace dala::cli;

int ExitCodeFor(dala_status st) {
  switch (st) {
    case DALA_ERR_WRONG_KEY: return kExitWrongKey;
    case DALA_ERR_NOT_FOUND: return kExitNotFound;
    case DALA_ERR_INVALID_ARGUMENT:
    case DALA_ERR_TOO_LARGE: return kExitUsage;
    default: return kExitError;
  }
}

// The versions this binary runs with: Dala's (from the library), SQLCipher's (the library libdala
// loaded: the same libsqlcipher) and libsodium's.
std::string Versions() {
  std::string cipher = "unknown";
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA cipher_version;", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      cipher = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return std::string("dala ") + dala_version() + "\nSQLCipher " + cipher + " (SQLite " + sqlite3_libversion() +
         ")\nlibsodium " + sodium_version_string();
}

}  // namespace

int main(int argc, char** argv) {
  int rc = kExitOk;
  CLI::App app{"dala: record reports, keep them safe, deliver them (docs/cli.md)", "dala"};
  app.set_version_flag("--version", Versions());
  app.require_subcommand(1);
  app.footer(
      "Passphrase: DALA_PASSPHRASE, or --passphrase-file FILE, or a prompt on the terminal.\n"
      "Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 wrong passphrase or key, 4 no such store or\n"
      "report (or nothing to open), 5 (sync) work remains for later, 6 (sync) a report was rejected.");
  AddStoreCommands(app, &rc);
  AddReportCommands(app, &rc);
  AddDeliveryCommands(app, &rc);
  AddDeskCommands(app, &rc);
  AddVerifyCommand(app, &rc);
  AddLogCommands(app, &rc);
  try {
    app.parse(argc, argv);
    return rc;
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints the help, the version, or what was wrong
    return code == 0 ? kExitOk : kExitUsage;
  } catch (const UsageError& u) {
    std::fprintf(stderr, "dala: %s\n(run 'dala --help' for usage)\n", u.message.c_str());
    return kExitUsage;
  } catch (const dala::Error& f) {
    std::fprintf(stderr, "dala: %s\n", f.what());
    return ExitCodeFor(f.status());
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "dala: unexpected error: %s\n", ex.what());
    return kExitError;
  }
}
