// Desk store benchmark (issue 15, "Measure"): the organisation's desk imports a dala-server export of
// 100,000 reports into its store (DeskStore::Import), printed beside the Ed25519-verification bound; the
// web desk's list, search and report pages on that store (server time, App::Handle); and a 64 MiB video
// served to a browser over HTTP by ranges, beside reading the same encrypted file and decrypting it in a
// loop. Every limit is measured in this same run.
//   dala_desk_store_bench [--reports N] [--devices N] [--video-mib N] [--keep]
// --keep leaves the work directory (org.key, passphrase "desk"; the desk store in desk/) for profiling.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
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
#include "base/encoding.h"
#include "base/fsutil.h"
#include "client/sync_engine.h"
#include "crypto/attachment_file.h"
#include "dala/v1/report.pb.h"
#include "dala/v1/sync.pb.h"
#include "desk/desk_key.h"
#include "desk/desk_media.h"
#include "desk/desk_pull.h"
#include "desk/desk_query.h"
#include "desk/desk_store.h"
#include "desk/export_opener.h"
#include "desk/web/web_app.h"
#include "desk/web/web_http.h"
#include "format/envelope.h"
#include "format/export_request.h"
#include "format/log.h"
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
// The RSS now (VmRSS), in MiB; 0 if unknown.
double CurrentRssMiB() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}
// Peak RSS is a high-water mark: writing 5 to clear_refs (Linux) starts it again from the current RSS.
bool ResetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return f.good();
}

Credential Pass(const char* text) {
  Credential c;
  c.kind = CredentialKind::kPassphrase;
  c.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>(text), std::strlen(text));
  return c;
}

// ---- the reports' text: varied narratives, so that full-text search has real work ----
// Made-up words of syllables (consonant + vowel): 2,000 common words (120 in each narrative: each word in
// about 6% of them), 100 rare ones (one in each narrative: each in about 1%), and a token unique to the
// report. Places: 50 names of three syllables (none inside another), drawn Zipf-like (the first is
// the capital, about a fifth of all reports).
constexpr int kCommon = 2000, kRare = 100, kPlaces = 50, kWordsPerNarrative = 120;

std::string Syllable(uint32_t k) {  // 70 of them
  static const char kC[] = "bdfgklmnprstvz", kV[] = "aeiou";
  return {kC[(k / 5) % 14], kV[k % 5]};
}
std::string CommonWord(int i) { return Syllable(i / 70) + Syllable(i % 70) + "n"; }
std::string RareWord(int i) { return Syllable(i / 70 + 50) + Syllable(i % 70) + "sh"; }
std::string Place(int i) {
  std::string p = Syllable(static_cast<uint32_t>(i * 37 + 11) % 70) + Syllable(i % 70) + Syllable(static_cast<uint32_t>(i / 70 + 3));
  p[0] = static_cast<char>(p[0] - 'a' + 'A');
  return p;
}

struct Rng {  // splitmix64: the same reports every run
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(Next() % n); }
  double Unit() { return static_cast<double>(Next() >> 11) / 9007199254740992.0; }
};

int ZipfPlace(Rng& rng) {
  static const std::vector<double> cumulative = [] {
    std::vector<double> c(kPlaces);
    double sum = 0;
    for (int k = 0; k < kPlaces; ++k) c[k] = (sum += 1.0 / (k + 1));
    for (auto& x : c) x /= sum;
    return c;
  }();
  return static_cast<int>(std::lower_bound(cumulative.begin(), cumulative.end(), rng.Unit()) - cumulative.begin()) %
         kPlaces;
}

std::string Narrative(Rng& rng, uint64_t serial) {
  std::string t;
  t.reserve(900);
  const int rare_at = static_cast<int>(rng.Below(kWordsPerNarrative));
  for (int w = 0; w < kWordsPerNarrative; ++w) {
    if (w == rare_at) t += RareWord(static_cast<int>(rng.Below(kRare))) + " ";
    t += CommonWord(static_cast<int>(rng.Below(kCommon)));
    t += (w % 12 == 11) ? ". " : " ";
  }
  char token[32];
  std::snprintf(token, sizeof token, "ref%010llx", static_cast<unsigned long long>(serial));
  return t + token;
}

// The phone's transport, in process: each request goes straight to ServerCore::Handle (uploads to
// HandleUpload, the body read from the encrypted file's range, as a real transport sends it).
class LoopTransport : public sync::Transport {
 public:
  explicit LoopTransport(server::ServerCore* s) : server_(s) {}
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    if (req.is_upload()) {
      std::string body(req.file_length, '\0');
      std::FILE* f = std::fopen(req.file_path.c_str(), "rb");
      if (f == nullptr) return Status(Code::kNotFound, "no attachment file to upload");
      const bool read = std::fseek(f, static_cast<long>(req.file_offset), SEEK_SET) == 0 &&
                        std::fread(body.data(), 1, body.size(), f) == body.size();
      std::fclose(f);
      if (!read) return Status(Code::kIo, "short attachment file");
      auto r = server_->HandleUpload(req.upload_header, body);
      return sync::HttpResponse{r.status, std::move(r.body)};
    }
    auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
    return sync::HttpResponse{r.status, std::move(r.body)};
  }

 private:
  server::ServerCore* server_;
};

// A desk's pull, in process: each request straight to ServerCore::Handle, with the server's time on each
// export page kept (pages answer in protobuf; attachment ranges in bytes).
class PullTransport : public sync::Transport {
 public:
  explicit PullTransport(server::ServerCore* s) : server_(s) {}
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    const auto start = Clock::now();
    auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
    if (r.status == 200 && r.content_type == protocol::kContentType)
      page_seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    return sync::HttpResponse{r.status, std::move(r.body)};
  }
  std::vector<double> page_seconds;

 private:
  server::ServerCore* server_;
};

// One phone: a real store joined through the organisation's invite, `n` sealed reports (a varied narrative
// of about 900 bytes and a place; 1000 per transaction), delivered with sync::RunOnce. With `video`, the
// first report carries it as a video/mp4 attachment. False unless all n got a receipt.
bool Phone(const std::string& dir, const std::string& invite, server::ServerCore* core, int n, int seed,
           const std::vector<uint8_t>* video) {
  StoreOptions fast;  // the cheapest Argon2id the store takes: the phone's key is not what is measured
  fast.kdf.opslimit = kKdfOpsMin;
  fast.kdf.memlimit = kKdfMemMin;
  auto store = Must(Store::Create(dir, Pass("bench"), fast), "phone store");
  Must(store->Join(invite), "join");
  Rng rng{static_cast<uint64_t>(seed) * 0x1000193ull + 7};
  uint64_t serial = static_cast<uint64_t>(seed) << 24;
  auto fill = [&](Report& r) {
    Must(r.SetNarrative(Narrative(rng, serial++)), "narrative");
    v1::FieldValue place;
    place.set_text(Place(ZipfPlace(rng)));
    Must(r.SetValue("place", place), "place");
  };
  int done = 0;
  if (video != nullptr && n > 0) {
    auto r = Must(store->CreateDraft("detention/1"), "draft");
    fill(r);
    Must(store->SaveDraft(r), "save");
    auto capture = Must(store->CaptureAttachment(r.id(), "video/mp4"), "capture");
    for (size_t at = 0; at < video->size(); at += 1u << 20)
      Must(capture->Write(std::span<const uint8_t>(video->data() + at, std::min<size_t>(1u << 20, video->size() - at))),
           "video");
    Must(capture->Finish(), "video finish");
    Must(store->Seal(r), "seal the video report");
    done = 1;
  }
  while (done < n) {
    std::vector<ReportId> ids;
    for (int i = 0; i < std::min(1000, n - done); ++i) {
      auto r = Must(store->CreateDraft("detention/1"), "draft");
      fill(r);
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

// ---- the Ed25519-verification bound (as dala_desk_bench measures it) ----
// Three Ed25519 verifications (the device's signature on the envelope, the device's signature on the report
// inside, the server's on the receipt) and one crypto_box_seal_open (the content key) per report, on one
// entry's real bytes, every input extracted before the timed loop. The best of 4 rounds of 1000.
double VerifyBound(const desk::Organisation& org, const std::string& env_bytes, const std::string& receipt_bytes) {
  v1::SealedEnvelope senv;
  v1::EnvelopeBody body;
  v1::SignedReceipt sreceipt;
  v1::Receipt receipt;
  if (!senv.ParseFromString(env_bytes) || !body.ParseFromString(senv.body()) ||
      !sreceipt.ParseFromString(receipt_bytes) || !receipt.ParseFromString(sreceipt.receipt()))
    Must(Status(Code::kCorrupt, "the entry does not parse"), "bound");
  const crypto::BoxKeyPair& recipient = org.recipients.back();
  const v1::WrappedKey* mine = nullptr;
  for (const auto& wk : body.keys())
    if (wk.recipient() == std::string_view(reinterpret_cast<const char*>(recipient.public_key.data()), 32)) mine = &wk;
  envelope::Header h;
  SecretBuffer plain = Must(envelope::Open(crypto::Bytes(env_bytes), recipient, &h), "open the entry");
  v1::SignedReport sreport;
  v1::ReportContent content;
  if (mine == nullptr || !sreport.ParseFromArray(plain.data(), static_cast<int>(plain.size())) ||
      !content.ParseFromString(sreport.content()))
    Must(Status(Code::kCorrupt, "the entry's report does not parse"), "bound");
  const std::string receipt_message = protocol::ReceiptMessage(receipt);
  const int kRound = 1000;
  double bound = 0;
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
    if (good != 4 * kRound) Must(Status(Code::kInternal, "the entry does not verify"), "bound");
    bound = std::max(bound, kRound / Seconds(Clock::now() - t0));
  }
  return bound;
}

// ---- a browser's side of HTTP/1.1: one blocking keep-alive connection ----
class HttpClient {
 public:
  HttpClient(uint16_t port, std::string host) : host_(std::move(host)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      Must(Status(Code::kIo, "cannot connect to the web desk"), "http");
  }
  ~HttpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  struct Answer {
    int status = 0;
    uint64_t length = 0;
    std::string set_cookie, body;  // body: only when no `into` was given
  };
  // GET `target`; the body goes to `into` (which must hold Content-Length bytes) or into Answer::body.
  Answer Get(const std::string& target, const std::string& cookie, const std::string& range, uint8_t* into) {
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + host_ + "\r\nUser-Agent: dala_desk_store_bench\r\n";
    if (!cookie.empty()) req += "Cookie: " + cookie + "\r\n";
    if (!range.empty()) req += "Range: " + range + "\r\n";
    req += "\r\n";
    for (size_t sent = 0; sent < req.size();) {
      const ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) Must(Status(Code::kIo, "send"), "http");
      sent += static_cast<size_t>(n);
    }
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) Fill();
    Answer a;
    const std::string head = buf_.substr(0, end + 2);
    buf_.erase(0, end + 4);
    if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0) Must(Status(Code::kCorrupt, "not HTTP"), "http");
    a.status = std::atoi(head.c_str() + 9);
    for (size_t at = head.find("\r\n") + 2; at < head.size();) {
      const size_t eol = head.find("\r\n", at);
      const std::string line = head.substr(at, eol - at);
      at = eol + 2;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon), value = line.substr(colon + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "content-length") a.length = std::strtoull(value.c_str(), nullptr, 10);
      if (name == "set-cookie") a.set_cookie = value;
    }
    if (into == nullptr) {
      while (buf_.size() < a.length) Fill();
      a.body = buf_.substr(0, a.length);
      buf_.erase(0, a.length);
      return a;
    }
    // Straight into the caller's memory, as the browser's media buffer takes it.
    uint64_t got = std::min<uint64_t>(buf_.size(), a.length);
    std::memcpy(into, buf_.data(), got);
    buf_.erase(0, got);
    while (got < a.length) {
      const ssize_t n = ::recv(fd_, into + got, static_cast<size_t>(a.length - got), 0);
      if (n <= 0) Must(Status(Code::kIo, "the connection ended inside a body"), "http");
      got += static_cast<uint64_t>(n);
    }
    return a;
  }

 private:
  void Fill() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) Must(Status(Code::kIo, "the connection ended"), "http");
    buf_.append(tmp, static_cast<size_t>(n));
  }
  int fd_ = -1;
  std::string host_, buf_;
};

struct Spread {
  double median = 0, p95 = 0;
};
Spread Of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t p95 = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(v.size()))) - 1;
  return {v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2, v[std::min(p95, v.size() - 1)]};
}

std::string Header(const desk::web::Response& r, const char* name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  int reports = 100000, devices = 100, video_mib = 64;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reports" && i + 1 < argc) {
      reports = std::atoi(argv[++i]);
    } else if (a == "--devices" && i + 1 < argc) {
      devices = std::atoi(argv[++i]);
    } else if (a == "--video-mib" && i + 1 < argc) {
      video_mib = std::atoi(argv[++i]);
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr, "usage: dala_desk_store_bench [--reports N] [--devices N] [--video-mib N] [--keep]\n");
      return 2;
    }
  }
  devices = std::min(devices, reports);
  if (reports < 1 || devices < 1 || video_mib < 8 || video_mib > 1024) {
    std::fprintf(stderr, "need 1 <= reports and 8 <= video MiB <= 1024\n");
    return 2;
  }
  if (sodium_init() < 0) return 1;
  const auto run_start = Clock::now();
  std::string work = (std::filesystem::temp_directory_path() / "dala-desk-store-bench-XXXXXX").string();
  if (::mkdtemp(work.data()) == nullptr) return 1;
  std::printf("Dala desk store benchmark (%d reports from %d phones, one with a %d MiB video; import, web pages, "
              "video over HTTP)\n\n",
              reports, devices, video_mib);

  // ---- set-up (not measured against anything): an organisation, a server, phones that deliver ----
  const auto setup_start = Clock::now();
  std::vector<uint8_t> video(static_cast<size_t>(video_mib) << 20);
  {
    uint8_t seed[randombytes_SEEDBYTES] = {42};
    randombytes_buf_deterministic(video.data(), video.size(), seed);
  }
  Must(desk::GenerateKey(work + "/org.key", Pass("desk"), {kKdfOpsMin, kKdfMemMin}, "bench"), "desk keygen");
  desk::Organisation org = Must(desk::OpenKey(work + "/org.key", Pass("desk")), "desk key");
  Must(server::ServerCore::Init(work + "/srv", org.root.public_key), "server init");
  auto core = Must(server::ServerCore::Open(work + "/srv"), "server open");
  std::string invite;
  {
    desk::InviteParams p;
    p.server = core->server_key();
    p.urls = {"http://127.0.0.1:1"};  // never dialled: the transport is in process
    p.uses = static_cast<uint32_t>(devices);
    p.expires_ms = SystemNowMs() + 86400000;
    invite = Must(desk::MakeInvite(org, p, SystemNowMs()), "invite");
  }
  {
    std::atomic<int> next{0};
    std::atomic<bool> ok{true};
    auto worker = [&] {
      for (int d; (d = next++) < devices;) {
        int n = reports / devices + (d < reports % devices ? 1 : 0);
        if (!Phone(work + "/phone-" + std::to_string(d), invite, core.get(), n, d, d == 0 ? &video : nullptr))
          ok = false;
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
  const std::string export_path = work + "/export.bin";
  const uint64_t exported = Must(core->Export(export_path), "export");
  core.reset();
  const double export_bytes = static_cast<double>(std::filesystem::file_size(export_path));
  std::printf("export: %llu reports, %.1f MiB (%.0f bytes a report) + the video in %s.media\n",
              (unsigned long long)exported, export_bytes / 1048576.0, export_bytes / reports, "export.bin");
  if (held != static_cast<uint64_t>(reports) || exported != static_cast<uint64_t>(reports)) {
    std::fprintf(stderr, "the server holds %llu reports and exported %llu, not %d\n", (unsigned long long)held,
                 (unsigned long long)exported, reports);
    std::filesystem::remove_all(work);
    return 1;
  }
  const double setup_peak = PeakRssMiB();

  // ---- the bound, on an entry without attachments (the smallest of the first few) ----
  double bound = 0;
  {
    auto bytes = Must(fs::ReadFile(export_path, static_cast<size_t>(INT32_MAX)), "read export");
    v1::Export ex;
    if (!ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || ex.reports_size() != reports)
      Must(Status(Code::kCorrupt, "not the export just written"), "read");
    int pick = 0;
    for (int i = 1; i < std::min(reports, 16); ++i)
      if (ex.reports(i).envelope().size() < ex.reports(pick).envelope().size()) pick = i;
    bound = VerifyBound(org, ex.reports(pick).envelope(), ex.reports(pick).receipt());
  }

  char label[120], basis[400];

  // ---- import: every check of desk open, and the store written (one transaction) ----
  const bool peak_reset = ResetPeakRss();
  const double import_rss0 = CurrentRssMiB();
  auto store = Must(desk::DeskStore::Open(org, work + "/desk"), "desk store");
  const double import_cpu0 = SelfCpu();
  const auto import_start = Clock::now();
  desk::ImportResult first = Must(store->Import(export_path, desk::OpenOptions{}, false), "import");
  const double import_s = Seconds(Clock::now() - import_start);
  const double import_cpu = SelfCpu() - import_cpu0;
  const double import_peak = PeakRssMiB();
  if (!first.imported || first.added != static_cast<uint64_t>(reports) || !first.summary.clean()) {
    std::fprintf(stderr, "import: imported %d, added %llu of %d%s%s\n", first.imported ? 1 : 0,
                 (unsigned long long)first.added, reports, first.problems.empty() ? "" : ": ",
                 first.problems.empty() ? "" : first.problems[0].c_str());
    std::filesystem::remove_all(work);
    return 1;
  }
  // The same export again: nothing new, every check made again.
  const auto again_start = Clock::now();
  desk::ImportResult again = Must(store->Import(export_path, desk::OpenOptions{}, false), "re-import");
  const double again_s = Seconds(Clock::now() - again_start);
  if (!again.imported || again.added != 0 || again.held != static_cast<uint64_t>(reports)) {
    std::fprintf(stderr, "re-import: imported %d, added %llu, held %llu\n", again.imported ? 1 : 0,
                 (unsigned long long)again.added, (unsigned long long)again.held);
    ++bench::failures;
  }
  // For the split: the checks alone (desk verify: the same OpenExport, nothing kept).
  const auto verify_start = Clock::now();
  auto verified = Must(desk::OpenExport(org, export_path, ""), "desk verify");
  const double verify_s = Seconds(Clock::now() - verify_start);
  if (!verified.clean()) ++bench::failures;

  std::snprintf(label, sizeof label, "desk import, %d-report export", reports);
  std::snprintf(basis, sizeof basis,
                "0.5x the bound %.0f reports/s: 3 Ed25519 verifies + 1 crypto_box_seal_open per report, one core, "
                "this run",
                bound);
  bench::Row(label, reports / import_s, ">=", 0.5 * bound, "/s", basis);
  Info("  import time (into a new store)", import_s, "s ");
  Info("  import CPU time (user + system)", import_cpu, "s ");
  Info("  import / the bound's time", import_s / (reports / bound), "x ");
  Info("  desk verify of the same export (no store)", verify_s, "s ");
  Info("  import time / verify time", import_s / verify_s, "x ");
  Info("  re-import of the same export (nothing new)", again_s, "s ");
  Info("  re-import time / verify time", again_s / verify_s, "x ");
  Info(peak_reset ? "  peak RSS of the import phase" : "  peak RSS so far (could not reset)", import_peak, "MiB");
  Info("    of which held before it (the set-up's)", import_rss0, "MiB");
  Info("    its own growth, per report",
       (import_peak - import_rss0) * 1048576.0 / reports, "B  ");

  // ---- the same log pulled by a desk (dala desk pull, in process), page by page ----
  {
    auto server = Must(server::ServerCore::Open(work + "/srv"), "server open");
    auto pulled = Must(desk::DeskStore::Open(org, work + "/desk-pull"), "desk store");
    PullTransport net(server.get());
    desk::PullOptions o;
    o.target.urls = {"http://127.0.0.1:1"};
    const auto pull_start = Clock::now();
    auto all = Must(desk::Pull(org, *pulled, o, net), "pull");
    const double pull_s = Seconds(Clock::now() - pull_start);
    if (all.size() != 1 || !all[0].error.ok() || all[0].import.added != static_cast<uint64_t>(reports)) {
      std::fprintf(stderr, "pull: %s\n", all.empty() ? "no server" : all[0].error.message().c_str());
      ++bench::failures;
    }
    double pages_s = 0;
    for (double t : net.page_seconds) pages_s += t;
    Info("desk pull, whole (pages, the video, import)", pull_s, "s ");
    Info("  desk pull rate", reports / pull_s, "/s");
    std::snprintf(label, sizeof label, "  server time of its %zu export pages", net.page_seconds.size());
    Info(label, pages_s, "s ");
  }
  {
    // The whole log in pages of 1 MiB, then of 32 MiB (the default), asked for as a desk does, the server's
    // time for each set: a page must cost what it holds, wherever it starts in the log (many small pages
    // cost about what few large ones do), and the server's lock is held only that long.
    const crypto::SigningKey pull_key = desk::PullKey(org);
    auto pages = [&](size_t page_bytes, int* count) {
      server::ServerLimits limits;
      limits.export_page_bytes = page_bytes;
      auto server = Must(server::ServerCore::Open(work + "/srv", limits), "server open");
      double seconds = 0;
      uint64_t from = 0, size = 0;
      for (*count = 0; *count == 0 || from < size; ++*count) {
        v1::ExportRequest r;
        r.set_server_key(server->server_key().data(), 32);
        r.set_time_ms(SystemNowMs());
        uint8_t nonce[16];
        randombytes_buf(nonce, sizeof nonce);
        r.set_nonce(nonce, sizeof nonce);
        r.mutable_page()->set_log_from(from);
        r.mutable_page()->set_log_size(size);
        const std::string body = protocol::SignExportRequest(pull_key, r);
        const auto start = Clock::now();
        auto answer = server->Handle("POST", protocol::kPathExport, protocol::kContentType, body);
        seconds += Seconds(Clock::now() - start);
        v1::Export ex;
        if (answer.status != 200 || !ex.ParseFromString(answer.body) || ex.log_size() == 0)
          Must(Status(Code::kInternal, "export page: " + std::to_string(answer.status) + " " + answer.body), "page");
        if (size == 0) size = protocol::LogHeadSize(ex.log_head());
        from += static_cast<uint64_t>(ex.log_size());
      }
      return seconds;
    };
    int small_count = 0, large_count = 0;
    const double small_s = pages(1u << 20, &small_count), large_s = pages(32u << 20, &large_count);
    std::snprintf(basis, sizeof basis, "server time, this run: %.2f s in %d pages of 1 MiB, %.2f s in %d of 32 MiB; "
                  "a page costs what it holds", small_s, small_count, large_s, large_count);
    if (small_count >= 20) {
      bench::Row("export pages of 1 MiB / of 32 MiB, whole log", small_s / large_s, "<=", 1.5, "x", basis);
    } else {  // too few pages for paging that grows with the log to show
      Info("export pages of 1 MiB / of 32 MiB, whole log", small_s / large_s, "x ");
    }
  }
  // ---- the web desk's pages, server side (App::Handle: query and page), on the imported store ----
  std::printf("\n");
  const int kRequests = 30;
  const std::string search_word = RareWord(0), place = Place(0);
  uint64_t search_hits = 0, place_hits = 0;
  {
    desk::ListQuery q;
    q.text = search_word;
    search_hits = Must(desk::ListReports(store->db(), q), "search").total;
    desk::ListQuery p;
    p.place = place;
    place_hits = Must(desk::ListReports(store->db(), p), "place").total;
  }
  const uint32_t place_page = static_cast<uint32_t>(std::min<uint64_t>(50, place_hits == 0 ? 0 : (place_hits - 1) / 50));
  {
    desk::web::App app(*store, "http://127.0.0.1:1", false);
    // The pages' prefix, as the login address shows it ("/" or a secret "/PATH/").
    const std::string login_path = desk::web::LoginUrl(app, "");
    const std::string base = login_path.substr(0, login_path.find("login?"));
    desk::web::Request login;
    login.method = "GET";
    login.path = base + "login";
    login.query = {{"token", app.login_token()}};
    desk::web::Response in = app.Handle(login);
    std::string cookie = Header(in, "Set-Cookie");
    cookie = cookie.substr(0, cookie.find(';'));
    if (in.status != 303 || cookie.empty()) Must(Status(Code::kInternal, "the web desk did not log in"), "login");

    struct Page {
      const char* label;
      std::string path;
      std::vector<std::pair<std::string, std::string>> query;
      bool per_report;
    };
    const std::vector<Page> pages = {
        {"/reports (newest 50)", base + "reports", {}, false},
        {"/reports?q=WORD (in 1% of reports)", base + "reports", {{"q", search_word}}, false},
        {"/reports?place=X&sort=place&page=N", base + "reports",
         {{"place", place}, {"sort", "place"}, {"dir", "asc"}, {"page", std::to_string(place_page)}}, false},
        {"/report/RID (a report, viewing logged)", "", {}, true},
    };
    std::printf("pages (%d requests each after 3 unmeasured; search '%s' matches %llu; place '%s' matches %llu, "
                "page %u):\n",
                kRequests, search_word.c_str(), (unsigned long long)search_hits, place.c_str(),
                (unsigned long long)place_hits, place_page);
    for (const auto& p : pages) {
      std::vector<double> ms, db_ms;
      size_t bytes = 0;
      for (int i = -3; i < kRequests; ++i) {
        desk::web::Request r;
        r.method = "GET";
        r.path = p.per_report ? base + "report/" + std::to_string(1 + (static_cast<int64_t>(i + 3) * 7919) % reports) : p.path;
        r.query = p.query;
        r.cookie = cookie;
        const auto t0 = Clock::now();
        desk::web::Response out = app.Handle(r);
        const double t = Seconds(Clock::now() - t0) * 1000;
        if (out.status != 200 || out.body.empty()) {
          std::fprintf(stderr, "%s: status %u\n", r.path.c_str(), out.status);
          ++bench::failures;
        }
        if (i < 0) continue;
        ms.push_back(t);
        bytes = out.body.size();
        const std::string timing = Header(out, "Server-Timing");
        if (timing.rfind("db;dur=", 0) == 0) db_ms.push_back(std::atof(timing.c_str() + 7));
      }
      const Spread s = Of(ms);
      std::snprintf(label, sizeof label, "%s median", p.label);
      std::snprintf(basis, sizeof basis, "issue 15: under 100 ms server time at %d reports; page %zu bytes", reports,
                    bytes);
      bench::Row(label, s.median, "<=", 100.0, "ms", basis);
      Info("  p95", s.p95, "ms");
      if (!db_ms.empty()) Info("  of which query (Server-Timing db), median", Of(db_ms).median, "ms");
    }
  }

  // ---- the video: served over HTTP by a running web desk, beside decrypting the same file ----
  std::printf("\n");
  int64_t video_rid = 0;
  std::string video_att;
  {
    auto st = Must(store->db().Prepare("SELECT r.rid, a.attachment_id FROM attachments a JOIN versions v ON "
                                       "v.id = a.version_id JOIN reports r ON r.device = v.device AND "
                                       "r.report_id = v.report_id"),
                   "find the video");
    if (!Must(st.Step(), "find the video")) Must(Status(Code::kNotFound, "no attachment in the store"), "video");
    video_rid = st.Int(0);
    video_att = encoding::ToHex(st.BlobView(1));
  }
  const desk::AttachmentRow att = Must(desk::LoadAttachment(store->db(), video_rid, video_att), "load the video");
  if (att.size != video.size() || !att.verified) Must(Status(Code::kCorrupt, "not the video sent"), "video");
  const std::string media_path = store->MediaPath(att.file);
  const double mb = static_cast<double>(att.size) / 1e6;
  std::vector<uint8_t> out(att.size);
  auto check = [&](const char* what) {
    if (std::memcmp(out.data(), video.data(), video.size()) != 0) {
      std::fprintf(stderr, "%s: not the video's bytes\n", what);
      ++bench::failures;
    }
    std::memset(out.data(), 0, out.size());
  };
  constexpr size_t kChunk = 256 * 1024;  // what web_http.cc reads at a time
  const int kTrials = 5;
  // The bound: MediaReader::ReadAt sequentially (a fresh reader's first pass, then passes over it again),
  // and attachment::Reader (sequential, checks the plaintext hash too).
  double reader_first = 0, reader_warm = 0, stream_reader = 0;
  for (int t = 0; t < kTrials; ++t) {
    auto reader = Must(desk::MediaReader::Open(media_path, att.key, att.size), "media reader");
    for (int pass = 0; pass < 3; ++pass) {
      const auto t0 = Clock::now();
      for (uint64_t at = 0; at < att.size;) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, att.size - at));
        at += Must(reader->ReadAt(at, std::span<uint8_t>(out.data() + at, want)), "read at");
      }
      const double rate = mb / Seconds(Clock::now() - t0);
      (pass == 0 ? reader_first : reader_warm) = std::max(pass == 0 ? reader_first : reader_warm, rate);
      check("MediaReader");
    }
    attachment::Reader::Expect e;
    e.size = att.size;
    std::copy_n(att.plaintext_hash.begin(), std::min<size_t>(32, att.plaintext_hash.size()), e.plaintext_hash.begin());
    const auto t0 = Clock::now();
    auto sr = Must(attachment::Reader::Open(media_path, att.key, e), "attachment reader");
    uint8_t end[16];  // at the end: a read of 0 bytes says that everything verified
    for (uint64_t at = 0;;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, att.size - at));
      const size_t n = Must(sr->Read(want > 0 ? std::span<uint8_t>(out.data() + at, want) : std::span<uint8_t>(end)),
                            "attachment reader");
      if (n == 0) break;
      at += n;
    }
    stream_reader = std::max(stream_reader, mb / Seconds(Clock::now() - t0));
    check("attachment::Reader");
  }
  // Over HTTP: a fresh web desk each trial (its reader's first pass), 8 MiB ranges in order as a browser
  // streams, then again (warm), then the whole file in one GET; each pass on a new keep-alive connection
  // (the check between passes would leave the connection idle, which costs a range a stall of its own:
  // measured below).
  constexpr uint64_t kRange = 8ull << 20;
  double http_first = 0, http_warm = 0, http_whole = 0;
  std::vector<double> back_to_back_ms, after_pause_ms, one_byte_ms;
  for (int t = 0; t < kTrials; ++t) {
    auto server = Must(desk::web::WebServer::Start(*store, {}), "web desk");
    const std::string url = server->url();  // http://127.0.0.1:PORT/[SECRET/]login?token=...
    const size_t host_at = url.find("//") + 2, path_at = url.find('/', host_at);
    const std::string host = url.substr(host_at, path_at - host_at);  // 127.0.0.1:PORT, the Host it answers to
    const uint16_t port = static_cast<uint16_t>(std::atoi(host.c_str() + host.find(':') + 1));
    const std::string login_path = url.substr(path_at);
    const std::string target = login_path.substr(0, login_path.find("login?")) + "media/" + std::to_string(video_rid) +
                               "/" + video_att;
    std::string cookie;
    {
      HttpClient http(port, host);
      auto in = http.Get(login_path, "", "", nullptr);
      cookie = in.set_cookie.substr(0, in.set_cookie.find(';'));
      if (in.status != 303 || cookie.empty()) Must(Status(Code::kInternal, "the web desk did not log in"), "login");
    }
    auto range = [&](HttpClient& http, uint64_t at) {
      const uint64_t last = std::min(att.size, at + kRange) - 1;
      auto a = http.Get(target, cookie, "bytes=" + std::to_string(at) + "-" + std::to_string(last), out.data() + at);
      if (a.status != 206 || a.length != last - at + 1) Must(Status(Code::kInternal, "not the range asked for"), "http");
    };
    for (int pass = 0; pass < 3; ++pass) {
      HttpClient http(port, host);
      const auto t0 = Clock::now();
      if (pass < 2) {
        for (uint64_t at = 0; at < att.size; at += kRange) range(http, at);
      } else {
        auto a = http.Get(target, cookie, "", out.data());
        if (a.status != 200 || a.length != att.size) Must(Status(Code::kInternal, "not the whole video"), "http");
      }
      const double rate = mb / Seconds(Clock::now() - t0);
      double& best = pass == 0 ? http_first : pass == 1 ? http_warm : http_whole;
      best = std::max(best, rate);
      check("HTTP");
    }
    // A browser playing a video asks for the next range when its buffer runs low: the connection has been
    // idle. One range right after another, and one after 30 ms idle, on the same connection.
    {
      HttpClient http(port, host);
      range(http, 0);
      for (int i = 0; i < 4; ++i) {
        const uint64_t at = (static_cast<uint64_t>(i) * kRange) % att.size;
        auto t0 = Clock::now();
        range(http, at);
        back_to_back_ms.push_back(Seconds(Clock::now() - t0) * 1000);
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        t0 = Clock::now();
        range(http, at);
        after_pause_ms.push_back(Seconds(Clock::now() - t0) * 1000);
      }
      // What a request costs besides the bytes: one byte of the video.
      uint8_t one[1];
      for (int i = 0; i < 4; ++i) {
        const auto t0 = Clock::now();
        auto a = http.Get(target, cookie, "bytes=1000-1000", one);
        one_byte_ms.push_back(Seconds(Clock::now() - t0) * 1000);
        if (a.status != 206 || a.length != 1 || one[0] != video[1000]) Must(Status(Code::kInternal, "not the byte"), "http");
      }
    }
    server->Stop();
  }
  std::snprintf(label, sizeof label, "video over HTTP, 8 MiB ranges, first pass");
  std::snprintf(basis, sizeof basis, "0.8x MediaReader's first pass %.0f MB/s (%d MiB, best of %d), this run", reader_first,
                video_mib, kTrials);
  bench::Row(label, http_first, ">=", 0.8 * reader_first, "MB/s", basis);
  std::snprintf(basis, sizeof basis, "0.8x MediaReader's later passes %.0f MB/s, this run", reader_warm);
  bench::Row("video over HTTP, 8 MiB ranges, again", http_warm, ">=", 0.8 * reader_warm, "MB/s", basis);
  bench::Row("video over HTTP, whole file in one GET", http_whole, ">=", 0.8 * reader_warm, "MB/s", basis);
  Info("  MediaReader::ReadAt in order, first pass", reader_first, "MB/s");
  Info("  MediaReader::ReadAt in order, later passes", reader_warm, "MB/s");
  Info("  attachment::Reader in order (hash checked)", stream_reader, "MB/s");
  Info("  HTTP ranges (again) / attachment::Reader", http_warm / stream_reader, "x ");
  Info("  HTTP ranges first pass / MediaReader first", http_first / reader_first, "x ");
  Info("  HTTP ranges again / MediaReader later", http_warm / reader_warm, "x ");
  Info("  one 8 MiB range right after another, median", Of(back_to_back_ms).median, "ms");
  Info("  one 8 MiB range after 30 ms idle, median", Of(after_pause_ms).median, "ms");
  Info("  a 1-byte range request, median", Of(one_byte_ms).median, "ms");

  std::printf("\n");
  Info("peak RSS of the set-up (server, phones)", setup_peak, "MiB");
  Info("peak RSS, import to the end", PeakRssMiB(), "MiB");
  store.reset();
  if (keep) std::printf("\nkept %s\n", work.c_str());
  else std::filesystem::remove_all(work);
  std::printf("\nwhole run %.1f s\n%s\n", Seconds(Clock::now() - run_start),
              bench::failures == 0 ? "all targets met" : "SOME TARGETS MISSED");
  return bench::failures == 0 ? 0 : 1;
}
