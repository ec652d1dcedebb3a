// Desk benchmark: the organisation's desk opens and verifies a dala-server export of 100,000 reports
// (desk::OpenExport), printed beside the Ed25519-verification bound and beside the time just to read the
// export, both measured in this same run.
//   dala_desk_bench [--reports N] [--devices N]
#include <sodium.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../support/must.h"
#include "base/clock.h"
#include "base/fsutil.h"
#include "client/sync_engine.h"
#include "dala/v1/report.pb.h"
#include "dala/v1/sync.pb.h"
#include "desk/desk_key.h"
#include "desk/export_opener.h"
#include "format/envelope.h"
#include "format/receipt.h"
#include "protocol/http_api.h"
#include "row.h"
#include "server/server_core.h"
#include "store/store.h"

using Clock = std::chrono::steady_clock;
using namespace dala;

namespace {

void Info(const char* metric, double v, const char* unit) {
  std::printf("%-44s %12.3f %s  (reported; no target)\n", metric, v, unit);
}
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
using testing::Must;

// CPU seconds (user + system) this process used so far, all threads: beside a wall time it tells computing
// from waiting (for fsync, say).
double SelfCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}
double PeakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

Credential Pass(const char* text) {
  Credential c;
  c.kind = CredentialKind::kPassphrase;
  c.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>(text), std::strlen(text));
  return c;
}

// The phone's transport, in process: each request goes straight to ServerCore::Handle, which verifies and
// stores it exactly as behind dala-server's HTTP front end (no sockets: the set-up is not what is measured).
class LoopTransport : public sync::Transport {
 public:
  explicit LoopTransport(server::ServerCore* s) : server_(s) {}
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    if (req.is_upload()) return Status(Code::kInternal, "the benchmark's reports have no attachments");
    auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
    return sync::HttpResponse{r.status, std::move(r.body)};
  }

 private:
  server::ServerCore* server_;
};

// One phone: a real store joined through the organisation's invite, `n` sealed reports with a 1 KB
// narrative (1000 per transaction), delivered with sync::RunOnce. False unless all n got a receipt.
bool Phone(const std::string& dir, const std::string& invite, server::ServerCore* core, int n, int seed) {
  StoreOptions fast;  // the cheapest Argon2id the store takes: the phone's key is not what is measured
  fast.kdf.opslimit = kKdfOpsMin;
  fast.kdf.memlimit = kKdfMemMin;
  auto store = Must(Store::Create(dir, Pass("bench"), fast), "phone store");
  Must(store->Join(invite), "join");
  std::string text(1000, ' ');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + (i * 7 + static_cast<size_t>(seed)) % 26);
  for (int done = 0; done < n;) {
    std::vector<ReportId> ids;
    for (int i = 0; i < std::min(1000, n - done); ++i) {
      auto r = Must(store->CreateDraft("detention/1"), "draft");
      Must(r.SetNarrative(text), "narrative");
      Must(store->SaveDraft(r), "save");
      ids.push_back(r.id());
    }
    Must(store->SealMany(ids), "seal");
    done += static_cast<int>(ids.size());
  }
  LoopTransport net(core);
  auto r = Must(sync::RunOnce(*store, net, SystemNowMs() + 600000, nullptr), "sync");
  store.reset();
  std::filesystem::remove_all(dir);  // the server holds the reports now
  if (r.delivered != static_cast<uint64_t>(n) || r.remaining != 0 || r.rejected != 0) {
    std::fprintf(stderr, "%s: delivered %llu of %d (rejected %llu, remaining %llu): %s\n", dir.c_str(),
                 (unsigned long long)r.delivered, n, (unsigned long long)r.rejected, (unsigned long long)r.remaining,
                 r.last_error.c_str());
    return false;
  }
  return true;
}

// Peak RSS is a high-water mark: writing 5 to clear_refs (Linux) starts it again from the current RSS, so
// that the audit's peak is not the set-up's. False where the kernel refuses.
bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good();
}

}  // namespace

int main(int argc, char** argv) {
  int reports = 100000, devices = 100;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reports" && i + 1 < argc) {
      reports = std::atoi(argv[++i]);
    } else if (a == "--devices" && i + 1 < argc) {
      devices = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: dala_desk_bench [--reports N] [--devices N]\n");
      return 2;
    }
  }
  if (reports < 1 || devices < 1 || devices > reports) {
    std::fprintf(stderr, "need 1 <= devices <= reports\n");
    return 2;
  }
  if (sodium_init() < 0) return 1;
  const auto run_start = Clock::now();
  std::string work = (std::filesystem::temp_directory_path() / "dala-desk-bench-XXXXXX").string();
  if (::mkdtemp(work.data()) == nullptr) return 1;
  std::printf("Dala desk benchmark (%d reports of 1 KB from %d phones, one server, the desk on one core)\n\n",
              reports, devices);

  // ---- set-up (not measured against anything): an organisation, a server, phones that deliver ----
  const auto setup_start = Clock::now();
  Must(desk::GenerateKey(work + "/org.key", Pass("desk"), {kKdfOpsMin, kKdfMemMin}, "bench"), "desk keygen");
  desk::Organisation org = Must(desk::OpenKey(work + "/org.key", Pass("desk")), "desk key");
  Must(server::ServerCore::Init(work + "/srv", org.root.public_key), "server init");
  auto core = Must(server::ServerCore::Open(work + "/srv"), "server open");
  std::string invite;
  {
    desk::InviteParams p;
    p.server = core->server_key();  // MakeInvite authorises it in the desk's statement: receipts verify
    p.urls = {"http://127.0.0.1:1"};  // never dialled: the transport is in process
    p.uses = static_cast<uint32_t>(devices);
    p.expires_ms = SystemNowMs() + 86400000;
    invite = Must(desk::MakeInvite(org, p, SystemNowMs()), "invite");
  }
  {
    // Phones fill and sync on one thread per core: each phone's store work (SQLCipher, sealing) runs beside
    // the others', and the server's group-commit writer takes pushes from all of them.
    std::atomic<int> next{0};
    std::atomic<bool> ok{true};
    auto worker = [&] {
      for (int d; (d = next++) < devices;) {
        int n = reports / devices + (d < reports % devices ? 1 : 0);
        if (!Phone(work + "/phone-" + std::to_string(d), invite, core.get(), n, d)) ok = false;
      }
    };
    std::vector<std::thread> threads;
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int t = 0; t < std::min(cores, devices); ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (!ok) {
      std::fprintf(stderr, "some phone did not deliver all its reports\n");
      std::filesystem::remove_all(work);
      return 1;
    }
  }
  const uint64_t held = Must(core->ReportCount(), "report count");
  std::printf("set-up: %llu reports on the server in %.1f s (%d phones: store, join, seal, sync in process)\n",
              (unsigned long long)held, Seconds(Clock::now() - setup_start), devices);
  if (held != static_cast<uint64_t>(reports)) {
    std::fprintf(stderr, "the server holds %llu reports, not %d\n", (unsigned long long)held, reports);
    std::filesystem::remove_all(work);
    return 1;
  }

  // ---- the export ----
  const std::string export_path = work + "/export.bin";
  const auto export_start = Clock::now();
  const uint64_t exported = Must(core->Export(export_path), "export");
  const double export_s = Seconds(Clock::now() - export_start);
  core.reset();  // the server is done: what follows is the desk's alone (and its memory)
  const double export_bytes = static_cast<double>(std::filesystem::file_size(export_path));
  std::printf("export: %llu reports, %.1f MiB (%.0f bytes a report), written in %.2f s\n\n",
              (unsigned long long)exported, export_bytes / 1048576.0, export_bytes / reports, export_s);
  if (exported != static_cast<uint64_t>(reports)) {
    std::fprintf(stderr, "the export holds %llu reports, not %d\n", (unsigned long long)exported, reports);
    std::filesystem::remove_all(work);
    return 1;
  }
  const double setup_peak = PeakRssMiB();
  const bool peak_reset = ResetPeakRss();

  // ---- read: the floor any audit pays, reading the file and parsing it (dala.v1.Export) ----
  // Best of 3: the file was just written, so it comes from the page cache, as it does for the audit below.
  double read_s = 1e300;
  std::string env_bytes, receipt_bytes;  // the first entry, for the bound
  for (int round = 0; round < 3; ++round) {
    const auto t0 = Clock::now();
    auto bytes = Must(fs::ReadFile(export_path, static_cast<size_t>(INT32_MAX)), "read export");
    v1::Export ex;
    const bool parsed = ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    read_s = std::min(read_s, Seconds(Clock::now() - t0));
    if (!parsed || ex.reports_size() != reports) Must(Status(Code::kCorrupt, "not the export just written"), "read");
    env_bytes = ex.reports(0).envelope();
    receipt_bytes = ex.reports(0).receipt();
  }

  // ---- the Ed25519-verification bound, one core: what the desk cannot avoid per report ----
  // Three Ed25519 verifications (the device's signature on the envelope, the device's signature on the
  // report inside, the server's on the receipt) and one crypto_box_seal_open (the content key, sealed to
  // the organisation's recipient key): without them nothing is verified. Measured on the first report's
  // real bytes, with the same domains and wrapper (crypto::Verify) the desk uses; every input (messages,
  // keys) is extracted before the timed loop, so nothing else is counted: no parsing, hashing, content
  // decryption, enrolment, log, JSON or files. The best of 4 rounds of 1000 (the strictest bound).
  double bound = 0;
  {
    v1::SealedEnvelope senv;
    v1::EnvelopeBody body;
    v1::SignedReceipt sreceipt;
    v1::Receipt receipt;
    if (!senv.ParseFromString(env_bytes) || !body.ParseFromString(senv.body()) ||
        !sreceipt.ParseFromString(receipt_bytes) || !receipt.ParseFromString(sreceipt.receipt()))
      Must(Status(Code::kCorrupt, "the first entry does not parse"), "bound");
    const crypto::BoxKeyPair& recipient = org.recipients.back();
    const v1::WrappedKey* mine = nullptr;
    for (const auto& wk : body.keys())
      if (wk.recipient() == std::string_view(reinterpret_cast<const char*>(recipient.public_key.data()), 32)) mine = &wk;
    envelope::Header h;
    SecretBuffer plain = Must(envelope::Open(crypto::Bytes(env_bytes), recipient, &h), "open the first entry");
    v1::SignedReport sreport;
    v1::ReportContent content;
    if (mine == nullptr || !sreport.ParseFromArray(plain.data(), static_cast<int>(plain.size())) ||
        !content.ParseFromString(sreport.content()))
      Must(Status(Code::kCorrupt, "the first entry's report does not parse"), "bound");
    const std::string receipt_message = protocol::ReceiptMessage(receipt);
    const int kRound = 1000;
    for (int round = 0; round < 4; ++round) {
      const auto t0 = Clock::now();
      int good = 0;
      for (int i = 0; i < kRound; ++i) {
        good += crypto::Verify(crypto::Bytes(body.device_key()), envelope::kDomain, crypto::Bytes(senv.body()),
                               crypto::Bytes(senv.signature()));
        good += crypto::Verify(crypto::Bytes(content.device_key()), crypto::kDomainReport,
                               crypto::Bytes(sreport.content()), crypto::Bytes(sreport.signature()));
        good += crypto::Verify(crypto::Bytes(receipt.server_key()), protocol::kDomainReceipt,
                               crypto::Bytes(receipt_message), crypto::Bytes(sreceipt.signature()));
        uint8_t content_key[32];
        good += mine->sealed_key().size() == crypto_box_SEALBYTES + sizeof content_key &&
                crypto_box_seal_open(content_key, reinterpret_cast<const uint8_t*>(mine->sealed_key().data()),
                                     mine->sealed_key().size(), recipient.public_key.data(),
                                     recipient.secret_key.data()) == 0;
        sodium_memzero(content_key, sizeof content_key);
      }
      if (good != 4 * kRound) Must(Status(Code::kInternal, "the first entry does not verify"), "bound");
      bound = std::max(bound, kRound / Seconds(Clock::now() - t0));
    }
  }

  // ---- the audit: every check, as dala desk verify makes them (nothing written), then dala desk open
  // (the same checks, and a decrypted file per report) ----
  auto audit = [&](const std::string& out_dir, double* cpu) {
    const double cpu0 = SelfCpu();
    const auto t0 = Clock::now();
    auto summary = desk::OpenExport(org, export_path, out_dir);
    const double s = Seconds(Clock::now() - t0);
    *cpu = SelfCpu() - cpu0;
    if (!summary.ok()) {
      std::fprintf(stderr, "desk: %s\n", summary.status().message().c_str());
      ++bench::failures;
    } else if (!summary->clean() || summary->verified != static_cast<uint64_t>(reports) ||
               summary->reports != static_cast<uint64_t>(reports)) {
      std::fprintf(stderr,
                   "desk: not a clean audit: %llu reports, %llu verified, %llu failed, duplicates %llu, reordered "
                   "%llu, unknown fields %llu, missing %llu, log problems %llu\n",
                   (unsigned long long)summary->reports, (unsigned long long)summary->verified,
                   (unsigned long long)summary->failed, (unsigned long long)summary->duplicates,
                   (unsigned long long)summary->reordered, (unsigned long long)summary->unknown_fields,
                   (unsigned long long)summary->missing, (unsigned long long)summary->log_problems);
      ++bench::failures;
    }
    return s;
  };
  double audit_cpu = 0, open_cpu = 0;
  const double audit_s = audit("", &audit_cpu);
  const double audit_peak = PeakRssMiB();
  const double open_s = audit(work + "/desk", &open_cpu);
  const double rate = reports / audit_s;
  char label[100], basis[300];
  std::snprintf(label, sizeof label, "desk verify, %d-report export", reports);
  std::snprintf(basis, sizeof basis,
                "0.5x the bound %.0f reports/s: 3 Ed25519 verifies (envelope, report, receipt) + 1 "
                "crypto_box_seal_open per report, one core, this run; the desk uses %u cores",
                bound, std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  bench::Row(label, rate, ">=", 0.5 * bound, "/s", basis);
  Info("  audit time (dala desk verify)", audit_s, "s ");
  Info("  audit CPU time (user + system)", audit_cpu, "s ");
  Info("  read + parse the export (best of 3)", read_s, "s ");
  Info("  audit time / read time", audit_s / read_s, "x ");
  Info("  audit CPU time / the bound's CPU time", audit_cpu / (reports / bound), "x ");
  Info(peak_reset ? "  peak RSS from the read to the audit's end" : "  peak RSS, whole run (could not reset)",
       audit_peak, "MiB");
  Info("dala desk open (the same, and a file per report)", reports / open_s, "/s");
  Info("  open time", open_s, "s ");
  Info("  open CPU time (user + system)", open_cpu, "s ");
  Info("  peak RSS of the set-up (server, phones)", setup_peak, "MiB");

  std::filesystem::remove_all(work);
  std::printf("\nwhole run %.1f s\n%s\n", Seconds(Clock::now() - run_start),
              bench::failures == 0 ? "all targets met" : "SOME TARGETS MISSED");
  return bench::failures == 0 ? 0 : 1;
}
