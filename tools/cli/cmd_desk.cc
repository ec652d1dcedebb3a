// dala desk keygen and dala desk open: the organisation's side, through libdala_desk.
#include <dala/desk.hh>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"

namespace dala::cli {

void AddDeskCommands(CLI::App& app, int* rc) {
  CLI::App* desk = app.add_subcommand("desk", "the organisation's desk: its key, and opening exports")
                       ->require_subcommand(1);
  struct KeygenArgs {
    std::string out, passphrase_file;
    KdfArgs kdf;
  };
  auto keygen = std::make_shared<KeygenArgs>();
  CLI::App* c = desk->add_subcommand("keygen", "writes a new organisation key file; prints its public key");
  c->add_option("--out", keygen->out, "the key file to write (must not exist)")->required();
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
    uint8_t pk[32];
    Call(dala_desk_keygen, keygen->out.c_str(), &cred, &opts, pk);
    std::printf("%s\n", Hex(pk, 32).c_str());
    *rc = kExitOk;
  });

  struct OpenArgs {
    std::string key, from, out, passphrase_file;
    bool json = false;
  };
  auto open = std::make_shared<OpenArgs>();
  c = desk->add_subcommand("open", "decrypts and verifies a dala-server export: one JSON file per report");
  c->add_option("--key", open->key, "the organisation key file")->required();
  c->add_option("--from", open->from, "the export (dala-server export --out)")->required();
  c->add_option("--out", open->out, "the directory to write the reports and summary.json to")->required();
  c->add_option("--passphrase-file", open->passphrase_file,
                "read the desk passphrase from FILE (else DALA_PASSPHRASE, else a prompt)");
  c->add_flag("--json", open->json, "the summary as JSON on stdout");
  c->callback([open, rc] {
    Secret pass = ReadPassphrase(open->passphrase_file, "DALA_PASSPHRASE", "Desk passphrase: ", false);
    dala_credential cred = Passphrase(pass.value);
    Ref<dala_desk> desk;
    Call(dala_desk_open, open->key.c_str(), &cred, Out(desk));
    dala_desk_summary sum;
    Call(dala_desk_open_export, desk.get(), open->from.c_str(), open->out.c_str(), &sum);
    if (open->json)
      PrintJson({{"reports", sum.reports}, {"verified", sum.verified}, {"failed", sum.failed},
                 {"summary", open->out + "/summary.json"}});
    else if (sum.reports == 0)
      std::fprintf(stderr, "dala: the export %s holds no reports: nothing to open\n", open->from.c_str());
    else
      std::printf("%llu reports: %llu verified, %llu failed (details in %s/summary.json)\n",
                  (unsigned long long)sum.reports, (unsigned long long)sum.verified, (unsigned long long)sum.failed,
                  open->out.c_str());
    *rc = sum.reports == 0 ? kExitNotFound : sum.failed == 0 ? kExitOk : kExitError;
  });
}

}  // namespace dala::cli
