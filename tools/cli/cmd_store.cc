// dala init, passphrase change (and re-key), duress, wipe, check, outbox.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"

namespace dala::cli {

void AddStoreCommands(CLI::App& app, int* rc) {
  auto init = std::make_shared<StoreArgs>();
  CLI::App* c = app.add_subcommand("init", "creates an encrypted store");
  AddStoreOptions(c, *init);
  c->add_flag("--delete-after-delivery", init->delete_after_delivery,
              "delete a version's content once every server holds it");
  c->callback([init, rc] {
    OpenStore(*init, true);
    std::fprintf(stderr, "Created an encrypted store in %s.\n", init->dir.c_str());
    *rc = kExitOk;
  });

  struct ChangeArgs {
    StoreArgs store;
    std::string new_file;
    bool rekey = false;
  };
  auto change = std::make_shared<ChangeArgs>();
  CLI::App* pass = app.add_subcommand("passphrase", "change the store's passphrase")->require_subcommand(1);
  c = pass->add_subcommand("change", "rewraps the store key under a new passphrase (the database is not rewritten)");
  AddStoreOptions(c, change->store);
  c->add_option("--new-passphrase-file", change->new_file,
                "read the new passphrase from FILE (else DALA_NEW_PASSPHRASE, else a prompt)");
  c->add_flag("--rekey", change->rekey,
              "also re-encrypt the database and the drafts' attachments under new keys, so that an old copy of "
              "the key file with the old passphrase opens nothing (takes time; safe to interrupt; run it again)");
  c->callback([change, rc] {
    Secret old_pass = ReadPassphrase(change->store.passphrase_file, "DALA_PASSPHRASE", "Current passphrase: ", false);
    Secret new_pass = ReadPassphrase(change->new_file, "DALA_NEW_PASSPHRASE", "New passphrase: ", true);
    dala_credential oc = Passphrase(old_pass.value), nc = Passphrase(new_pass.value);
    dala_store_options opts = StoreOptions(change->store);
    if (change->rekey) {
      bool tty = isatty(fileno(stderr));
      // The two phases run at the same time: one line shows both.
      struct Shown {
        bool database_done = false;
        uint64_t done = 0, total = 0;
      } shown;
      dala_rekey_progress_fn show = [](void* context, int phase, uint64_t done, uint64_t total) {
        auto* s = static_cast<Shown*>(context);
        if (phase == 2) s->done = done, s->total = total;
        else s->database_done = done == total;
        std::fprintf(stderr, "\rre-encrypting: the database %s, attachments %llu of %llu MiB   ",
                     s->database_done ? "done" : "...", (unsigned long long)(s->done >> 20),
                     (unsigned long long)(s->total >> 20));
      };
      Call(dala_store_rekey, change->store.dir.c_str(), &oc, &nc, &opts, tty ? show : nullptr, tty ? &shown : nullptr);
      if (tty) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "Passphrase changed and the store re-keyed: an old key file with the old passphrase "
                           "opens nothing now.\n");
    } else {
      Call(dala_store_change_credential, change->store.dir.c_str(), &oc, &nc, &opts);
      std::fprintf(stderr, "Passphrase changed. The database was not rewritten (--rekey re-encrypts it).\n");
    }
    *rc = kExitOk;
  });

  struct DuressArgs {
    StoreArgs store;
    std::string duress_file;
  };
  auto duress = std::make_shared<DuressArgs>();
  CLI::App* dur = app.add_subcommand("duress", "a duress passphrase: opening with it destroys the store (docs/duress.md)")
                      ->require_subcommand(1);
  c = dur->add_subcommand("set", "sets or replaces the duress passphrase");
  AddStoreOptions(c, duress->store);
  c->add_option("--duress-passphrase-file", duress->duress_file,
                "read the duress passphrase from FILE (else DALA_DURESS_PASSPHRASE, else a prompt)");
  c->callback([duress, rc] {
    Secret pass = ReadPassphrase(duress->store.passphrase_file, "DALA_PASSPHRASE", "Store passphrase: ", false);
    Secret dpass = ReadPassphrase(duress->duress_file, "DALA_DURESS_PASSPHRASE", "Duress passphrase: ", true);
    dala_credential cred = Passphrase(pass.value);
    dala_store_options opts = StoreOptions(duress->store);
    Call(dala_store_set_duress, duress->store.dir.c_str(), &cred,
         reinterpret_cast<const uint8_t*>(dpass.value.data()), dpass.value.size(), &opts);
    std::fprintf(stderr, "Duress passphrase set. Opening the store with it destroys everything in it.\n");
    *rc = kExitOk;
  });
  auto undo = std::make_shared<StoreArgs>();
  c = dur->add_subcommand("clear", "removes the duress passphrase");
  AddStoreOptions(c, *undo);
  c->callback([undo, rc] {
    Secret pass = ReadPassphrase(undo->passphrase_file, "DALA_PASSPHRASE", "Store passphrase: ", false);
    dala_credential cred = Passphrase(pass.value);
    dala_store_options opts = StoreOptions(*undo);
    Call(dala_store_clear_duress, undo->dir.c_str(), &cred, &opts);
    std::fprintf(stderr, "No duress passphrase is set.\n");
    *rc = kExitOk;
  });

  struct WipeArgs {
    std::string dir;
    bool yes = false;
  };
  auto wipe = std::make_shared<WipeArgs>();
  c = app.add_subcommand("wipe", "panic wipe: destroys the key first, then the files; needs no passphrase");
  c->add_option("--store", wipe->dir, "the store directory")->required();
  c->add_flag("--yes", wipe->yes, "confirms: the store is destroyed for good");
  c->callback([wipe, rc] {
    if (!wipe->yes) throw UsageError{"wipe destroys the store for good; add --yes to confirm"};
    Call(dala_store_wipe, wipe->dir.c_str());
    std::fprintf(stderr, "Store wiped: its key was destroyed and its files removed.\n");
    *rc = kExitOk;
  });

  auto check = std::make_shared<StoreArgs>();
  c = app.add_subcommand("check", "checks every database page");
  AddStoreOptions(c, *check);
  c->callback([check, rc] {
    auto s = OpenStore(*check, false);
    Call(dala_store_check, s.get());
    std::fprintf(stderr, "The store is intact.\n");
    *rc = kExitOk;
  });

  struct OutboxArgs {
    StoreArgs store;
    std::string destination = "default";
    bool json = false;
  };
  auto outbox = std::make_shared<OutboxArgs>();
  c = app.add_subcommand("outbox", "what is pending, in flight, delivered and rejected for a destination");
  AddStoreOptions(c, outbox->store);
  c->add_option("--destination", outbox->destination, "the destination (dala join prints it)");
  c->add_flag("--json", outbox->json, "as JSON");
  c->callback([outbox, rc] {
    auto s = OpenStore(outbox->store, false);
    dala_outbox_stats st;
    Call(dala_outbox_get_stats, s.get(), outbox->destination.c_str(), &st);
    if (outbox->json)
      PrintJson({{"destination", outbox->destination}, {"pending", st.pending}, {"in_flight", st.in_flight},
                 {"delivered", st.delivered}, {"rejected", st.rejected}});
    else
      std::printf("%s: %llu pending, %llu in flight, %llu delivered, %llu rejected\n", outbox->destination.c_str(),
                  (unsigned long long)st.pending, (unsigned long long)st.in_flight, (unsigned long long)st.delivered,
                  (unsigned long long)st.rejected);
    *rc = kExitOk;
  });
}

}  // namespace dala::cli
