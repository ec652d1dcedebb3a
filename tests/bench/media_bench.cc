// Media capture benchmark: an attachment written through the C API (dala_attachment_writer: encrypt,
// both hashes, write, fsync, record) beside bare libsodium secretstream over the same data in the same
// run. Also the primitives that bound it (BLAKE2b), measured here, so the figure can be explained.
//   dala_media_bench [--mib N] [--dir DIR]
#include <dala/dala.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "row.h"

namespace {

using Clock = std::chrono::steady_clock;
double Sec(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void Check(dala_status st, dala_error* e, const char* what) {
  if (st == DALA_OK) return;
  std::fprintf(stderr, "%s failed: %s\n", what, e ? dala_error_message(e) : dala_status_name(st));
  std::exit(1);
}

using bench::failures;
using bench::Row;

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 512;
  std::string dir = (std::filesystem::temp_directory_path() / "dala-media-bench").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--mib") == 0) mib = std::strtoul(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
  }
  if (sodium_init() < 0) return 1;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const size_t buf_size = 1u << 20;  // one camera-sized buffer, written mib times
  std::vector<uint8_t> buf(buf_size);
  randombytes_buf(buf.data(), buf.size());
  const double mb = static_cast<double>(mib) * buf_size / 1e6;

  // Bare secretstream: 64 KiB messages into memory, nothing else.
  auto bare = [&] {
    uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES], header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_init_push(&st, header, key);
    std::vector<uint8_t> out(65536 + crypto_secretstream_xchacha20poly1305_ABYTES);
    auto s = Clock::now();
    for (size_t i = 0; i < mib; ++i)
      for (size_t off = 0; off < buf_size; off += 65536)
        crypto_secretstream_xchacha20poly1305_push(&st, out.data(), nullptr, buf.data() + off, 65536, nullptr, 0, 0);
    return Sec(Clock::now() - s);
  };
  auto blake = [&] {
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, 32);
    auto s = Clock::now();
    for (size_t i = 0; i < mib; ++i) crypto_generichash_update(&st, buf.data(), buf_size);
    uint8_t h[32];
    crypto_generichash_final(&st, h, sizeof h);
    return Sec(Clock::now() - s);
  };

  dala_store_options o;
  dala_store_options_init(&o);
  uint8_t raw[32];
  randombytes_buf(raw, sizeof raw);
  dala_credential cred{DALA_CREDENTIAL_RAW_KEY, raw, sizeof raw, nullptr, 0};
  dala_store* store = nullptr;
  dala_error* e = nullptr;
  Check(dala_store_create((dir + "/store").c_str(), &cred, &o, &store, &e), e, "create");
  dala_report* r = nullptr;
  Check(dala_report_create(store, "detention/1", &r, &e), e, "report");
  dala_report_id id;
  dala_report_get_id(r, &id);
  auto capture = [&] {
    dala_attachment_writer* w = nullptr;
    Check(dala_attachment_writer_open(store, &id, "video/mp4", &w, &e), e, "writer");
    auto s = Clock::now();
    for (size_t i = 0; i < mib; ++i) Check(dala_attachment_writer_write(w, buf.data(), buf.size(), &e), e, "write");
    dala_attachment_id aid;
    Check(dala_attachment_writer_finish(w, &aid, &e), e, "finish");
    double t = Sec(Clock::now() - s);
    dala_attachment_writer_free(w);
    Check(dala_attachment_remove(store, &aid, &e), e, "remove");
    return t;
  };

  // Alternate, three rounds each; medians.
  std::vector<double> tb, tc, th;
  for (int round = 0; round < 3; ++round) {
    tb.push_back(bare());
    tc.push_back(capture());
    th.push_back(blake());
  }
  auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
  double bare_mbs = mb / med(tb), cap_mbs = mb / med(tc), b2_mbs = mb / med(th);
  // What one thread must do per byte at capture: encrypt, hash the plaintext, hash the ciphertext.
  double ceiling = (1 / bare_mbs) / (1 / bare_mbs + 2 / b2_mbs);

  std::printf("Media capture: %zu MiB through dala_attachment_writer (1 MiB writes, fsync at finish), medians of 3\n",
              mib);
  std::printf("  bare secretstream %.0f MB/s, BLAKE2b %.0f MB/s, capture %.0f MB/s; one-thread bound for encrypt + 2 hashes: %.2fx\n",
              bare_mbs, b2_mbs, cap_mbs, ceiling);
  Row("capture throughput / bare secretstream", cap_mbs / bare_mbs, ">=", 0.8, "x  ", "issue 4 target");
  Row("capture throughput / one-thread bound", cap_mbs / bare_mbs / ceiling, ">=", 0.8, "x  ",
      "secretstream + 2 BLAKE2b, measured here");
  dala_report_free(r);
  dala_store_close(store);
  std::filesystem::remove_all(dir);
  return failures == 0 ? 0 : 1;
}
