// Re-keying and the duress open (issue 14): the time to re-key a store of N reports and M MiB of draft
// attachments, printed beside a plain copy of the same files with fsync measured in the same run.
//   dala_rekey_bench [--reports N] [--media-mib M] [--dir DIR]   (defaults 100000 and 1024)
#include <dala/dala.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "row.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// User and system CPU time of this process so far, in seconds (all its threads).
double ProcessCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void Check(dala_status st, dala_error* e, const char* what) {
  if (st == DALA_OK) return;
  std::fprintf(stderr, "%s failed: %s %s\n", what, dala_status_name(st), e ? dala_error_message(e) : "");
  std::exit(1);
}
#define CHECK(call)                  \
  do {                               \
    dala_error* e_ = nullptr;        \
    Check((call), e_, #call);        \
  } while (0)

// A plain copy of every file under `from` into `to`, each synced: what re-encrypting the same bytes is
// compared with.
uint64_t CopyTree(const std::string& from, const std::string& to) {
  uint64_t bytes = 0;
  std::vector<char> buf(1 << 20);
  std::filesystem::create_directories(to);
  for (auto& e : std::filesystem::recursive_directory_iterator(from)) {
    auto rel = std::filesystem::relative(e.path(), from);
    if (e.is_directory()) {
      std::filesystem::create_directories(to / rel);
      continue;
    }
    int in = ::open(e.path().c_str(), O_RDONLY);
    int out = ::open((std::filesystem::path(to) / rel).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0) std::abort();
    for (;;) {
      ssize_t n = ::read(in, buf.data(), buf.size());
      if (n <= 0) break;
      if (::write(out, buf.data(), static_cast<size_t>(n)) != n) std::abort();
      bytes += static_cast<uint64_t>(n);
    }
    ::fsync(out);
    ::close(in);
    ::close(out);
  }
  return bytes;
}

// Reads every file under `dir` once, so that what follows finds it in the page cache.
void WarmTree(const std::string& dir) {
  std::vector<char> buf(1 << 20);
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    int in = ::open(e.path().c_str(), O_RDONLY);
    if (in < 0) std::abort();
    while (::read(in, buf.data(), buf.size()) > 0) {
    }
    ::close(in);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int reports = 100000, media_mib = 1024;
  std::string base = std::filesystem::temp_directory_path().string();
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--reports") reports = std::atoi(argv[i + 1]);
    else if (a == "--media-mib") media_mib = std::atoi(argv[i + 1]);
    else if (a == "--dir") base = argv[i + 1];
  }
  if (sodium_init() < 0) return 1;
  std::string work = base + "/dala-rekey-bench-" + std::to_string(getpid());
  std::string dir = work + "/store";
  std::filesystem::create_directories(work);
  const char* pass = "bench passphrase";
  dala_credential cred = {DALA_CREDENTIAL_PASSPHRASE, reinterpret_cast<const uint8_t*>(pass), strlen(pass), nullptr, 0};
  dala_store_options opts;
  dala_store_options_init(&opts);
  dala_store* s = nullptr;
  CHECK(dala_store_create(dir.c_str(), &cred, &opts, &s, &e_));
  std::string narrative(700, 'n');
  for (int have = 0; have < reports;) {
    int n = std::min(1000, reports - have);
    std::vector<dala_report_id> ids(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      dala_report* r = nullptr;
      CHECK(dala_report_create(s, "detention/1", &r, &e_));
      CHECK(dala_report_set_narrative(r, narrative.c_str(), &e_));
      CHECK(dala_report_save(s, r, &e_));
      dala_report_get_id(r, &ids[static_cast<size_t>(i)]);
      dala_report_free(r);
    }
    CHECK(dala_store_seal_reports(s, ids.data(), ids.size(), &e_));
    have += n;
  }
  // The media: draft attachments of 64 MiB (the re-key encrypts them again; sealed ones are bound).
  std::vector<uint8_t> chunk(1 << 20);
  randombytes_buf(chunk.data(), chunk.size());
  for (int left = media_mib; left > 0;) {
    int part = std::min(64, left);
    dala_report* r = nullptr;
    CHECK(dala_report_create(s, "detention/1", &r, &e_));
    dala_report_id id;
    dala_report_get_id(r, &id);
    dala_attachment_writer* w = nullptr;
    CHECK(dala_attachment_writer_open(s, &id, "video/mp4", &w, &e_));
    for (int i = 0; i < part; ++i) CHECK(dala_attachment_writer_write(w, chunk.data(), chunk.size(), &e_));
    dala_attachment_id aid;
    CHECK(dala_attachment_writer_finish(w, &aid, &e_));
    dala_attachment_writer_free(w);
    dala_report_free(r);
    left -= part;
  }
  dala_store_close(s);
  ::sync();
  // Both read the store's files from the page cache: the copy, timed first, must not pay a cold read that
  // the re-key after it would then be spared.
  WarmTree(dir);

  auto c0 = Clock::now();
  uint64_t bytes = CopyTree(dir, work + "/copy");
  double copy_s = Seconds(Clock::now() - c0);
  std::filesystem::remove_all(work + "/copy");
  ::sync();

  const char* next = "new bench passphrase";
  dala_credential new_cred = {DALA_CREDENTIAL_PASSPHRASE, reinterpret_cast<const uint8_t*>(next), strlen(next), nullptr,
                              0};
  auto r0 = Clock::now();
  const double cpu0 = ProcessCpu();
  CHECK(dala_store_rekey(dir.c_str(), &cred, &new_cred, &opts, nullptr, nullptr, &e_));
  double rekey_s = Seconds(Clock::now() - r0);
  const double rekey_cpu = ProcessCpu() - cpu0;

  std::printf("Re-key benchmark: %d reports, %d MiB of draft attachments, %.1f MiB of store files\n", reports,
              media_mib, bytes / 1048576.0);
  char label[96], basis[160];
  std::snprintf(label, sizeof label, "re-key (%d reports, %d MiB media)", reports, media_mib);
  std::snprintf(basis, sizeof basis, "3x a plain copy of the same files with fsync: %.2f s", copy_s);
  bench::Row(label, rekey_s, "<=", 3 * copy_s, "s", basis);
  std::printf("  re-key CPU time %.2f s (user and system, all threads) in %.2f s\n", rekey_cpu, rekey_s);
  // The re-key frees the old attachment files on a thread of its own, which may still be at it.
  std::error_code ec;
  for (int i = 0; i < 100 && (std::filesystem::remove_all(work, ec), ec); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return bench::failures == 0 ? 0 : 1;
}
