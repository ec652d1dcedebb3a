// dala join, sync, receipts.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli.h"

namespace dala::cli {
namespace {

void ShowProgress(void*, const dala_sync_progress* p) {
  std::string media;
  if (p->upload_total > 0)
    media = ", uploading " + SizeText(p->upload_done) + " of " + SizeText(p->upload_total) + " (" +
            std::to_string(p->upload_done * 100 / p->upload_total) + "%)";
  std::fprintf(stderr, "\r%s: %llu delivered, %llu left%s   ", p->destination, (unsigned long long)p->delivered,
               (unsigned long long)p->remaining, media.c_str());
  std::fflush(stderr);
}

nlohmann::ordered_json Servers(dala_store* s) {
  Ref<dala_server_list> list;
  Call(dala_store_list_servers, s, Out(list));
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  for (size_t i = 0; i < dala_server_list_count(list.get()); ++i) {
    dala_server_info info;
    Call(dala_server_list_get, list.get(), i, &info);
    all.push_back({{"destination", info.destination}, {"organisation", info.organisation},
                   {"fingerprint", info.fingerprint}, {"url", info.url},
                   {"server_key", Hex(info.server_key, 32)}, {"enrolled", info.enrolled != 0},
                   {"last_error", info.last_error}});
  }
  return all;
}

struct SyncArgs {
  StoreArgs store;
  std::string proxy;
  uint64_t timeout_s = 30;
  bool now = false, json = false;
};

int Sync(const SyncArgs& a) {
  dala_sync_options o;
  dala_sync_options_init(&o);
  o.timeout_ms = static_cast<int64_t>(a.timeout_s) * 1000;
  if (!a.proxy.empty()) o.proxy_url = a.proxy.c_str();
  bool tty = !a.json && isatty(fileno(stderr));
  if (tty) o.progress = ShowProgress;
  auto s = OpenStore(a.store, false);
  if (Servers(s.get()).empty()) {
    std::fprintf(stderr, "dala: this store has not joined an organisation; run 'dala join' with an invite\n");
    return kExitError;
  }
  // Someone asked to sync now: what waited only because the network was down is due now; with --now,
  // everything queued, whatever its backoff.
  if (a.now) Call(dala_store_retry_now, s.get());
  else Call(dala_store_notify_online, s.get());
  dala_sync_result r;
  Call(dala_sync_run_once, s.get(), &o, &r);
  if (tty) std::fprintf(stderr, "\n");
  nlohmann::ordered_json servers = Servers(s.get());
  if (a.json) {
    PrintJson({{"delivered", r.delivered}, {"rejected", r.rejected}, {"remaining", r.remaining},
               {"unreachable", r.unreachable != 0}, {"servers", servers}});
  } else {
    std::fprintf(stderr, "%llu delivered, %llu rejected, %llu left%s\n", (unsigned long long)r.delivered,
                 (unsigned long long)r.rejected, (unsigned long long)r.remaining,
                 r.unreachable ? " (a server could not be reached; try again later)" : "");
    for (const auto& sv : servers)
      if (!sv["last_error"].get<std::string>().empty())
        std::fprintf(stderr, "%s (%s): %s\n",
                     (sv["organisation"].get<std::string>().empty() ? sv["destination"] : sv["organisation"])
                         .get<std::string>()
                         .c_str(),
                     sv["url"].get<std::string>().c_str(), sv["last_error"].get<std::string>().c_str());
  }
  if (r.rejected > 0) return kExitRejected;
  return r.remaining == 0 ? kExitOk : kExitLater;
}

}  // namespace

void AddDeliveryCommands(CLI::App& app, int* rc) {
  struct JoinArgs {
    StoreArgs store;
    std::string invite, invite_file;
    bool json = false, include_existing = false;
  };
  auto join = std::make_shared<JoinArgs>();
  CLI::App* c = app.add_subcommand("join", "records an organisation's server from its invite (works offline)");
  AddStoreOptions(c, join->store);
  auto* text = c->add_option("invite", join->invite,
                             "the invite (DALA2-...); it holds an enrolment secret, and a command line is visible "
                             "to other programs: prefer --invite-file");
  c->add_option("--invite-file", join->invite_file, "read the invite from FILE ('-': standard input)")->excludes(text);
  c->add_flag("--include-existing", join->include_existing,
              "also send this organisation the reports sealed before (default: only what is sealed from now on)");
  c->add_flag("--json", join->json, "as JSON");
  c->callback([join, rc] {
    if (!join->invite_file.empty()) {
      if (join->invite_file == "-") {
        std::stringstream ss;
        ss << std::cin.rdbuf();
        join->invite = ss.str();
      } else {
        join->invite = ReadTextFile(join->invite_file, "invite file");
      }
    } else if (join->invite.empty()) {
      throw UsageError{"give the invite, or --invite-file FILE"};
    }
    auto s = OpenStore(join->store, false);
    char* dest = nullptr;
    dala_join_options o;
    dala_join_options_init(&o);
    o.include_existing = join->include_existing ? 1 : 0;
    Call(dala_store_join, s.get(), join->invite.c_str(), &o, &dest);
    std::string destination = TakeString(dest);
    nlohmann::ordered_json joined;
    for (const auto& sv : Servers(s.get()))
      if (sv["destination"] == destination) joined = sv;
    if (join->json) {
      PrintJson(joined);
    } else {
      std::string name = joined["organisation"].get<std::string>();
      std::fprintf(stderr,
                   "Fingerprint of the organisation joined:\n  %s\ncompare it with the one the organisation gave you.\n"
                   "Joined %s (destination %s). Reports sealed from now on go to it%s; the phone enrols at its first "
                   "sync.\n",
                   joined["fingerprint"].get<std::string>().c_str(),
                   name.empty() ? "an organisation with no name" : ("'" + name + "'").c_str(), destination.c_str(),
                   join->include_existing ? ", and so do those sealed before"
                                          : " (those begun before only with --include-existing)");
    }
    *rc = kExitOk;
  });

  auto sync = std::make_shared<SyncArgs>();
  c = app.add_subcommand("sync", "sends what is due to every joined server");
  AddStoreOptions(c, sync->store);
  c->add_option("--timeout", sync->timeout_s, "give up after SECONDS (default 30)")->check(CLI::Range(1, 86400));
  c->add_option("--proxy", sync->proxy,
                "every connection through this SOCKS5 proxy, socks5h://HOST:PORT (Tor: socks5h://127.0.0.1:9050); "
                "names are resolved by the proxy")
      ->envname("DALA_PROXY");
  c->add_flag("--now", sync->now, "send everything queued now, whatever its backoff");
  c->add_flag("--json", sync->json, "the result as JSON on stdout");
  c->callback([sync, rc] { *rc = Sync(*sync); });

  struct ReceiptArgs {
    StoreArgs store;
    bool json = false;
  };
  auto receipts = std::make_shared<ReceiptArgs>();
  c = app.add_subcommand("receipts", "the servers' receipts kept on this phone, each with its place in the server's signed log");
  AddStoreOptions(c, receipts->store);
  c->add_flag("--json", receipts->json, "as JSON");
  c->callback([receipts, rc] {
    auto s = OpenStore(receipts->store, false);
    Ref<dala_receipt_list> list;
    Call(dala_store_list_receipts, s.get(), Out(list));
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (size_t i = 0; i < dala_receipt_list_count(list.get()); ++i) {
      dala_receipt_info r;
      Call(dala_receipt_list_get, list.get(), i, &r);
      if (receipts->json)
        all.push_back({{"id", ToString(r.id)}, {"version", r.version}, {"destination", r.destination},
                       {"sequence", r.sequence}, {"server_time", r.server_time_ms}, {"verified", r.verified != 0},
                       {"receipt", Hex(r.receipt, r.receipt_size)}});
      else
        std::printf("%s  v%-3u #%-6llu %s  %s\n", ToString(r.id).c_str(), r.version, (unsigned long long)r.sequence,
                    FormatTime(r.server_time_ms).c_str(), r.verified ? "verified" : "NOT VERIFIED");
    }
    if (receipts->json) PrintJson(all);
    *rc = kExitOk;
  });
}

}  // namespace dala::cli
