// What padding costs on the wire (issue 14, item 7): envelopes and signed pushes of reports of realistic
// sizes, and attachment files, each beside its unpadded size, as sealed and signed by the real code.
//   dala_padding_bench [--samples N]
#include <sodium.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/padding.h"
#include "crypto/attachment_file.h"
#include "crypto/crypto.h"
#include "format/envelope.h"
#include "format/request.h"
#include "row.h"

using namespace dala;

int main(int argc, char** argv) {
  int samples = 2000;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--samples") samples = std::atoi(argv[i + 1]);
  if (sodium_init() < 0) return 1;
  std::mt19937_64 rng(14);
  // Report sizes: log-uniform from 300 bytes (a form with a few fields) to 30 KB (a long narrative).
  std::uniform_real_distribution<double> log_report(std::log(300.0), std::log(30000.0));
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  crypto::BoxKeyPair org = crypto::GenerateBoxKeyPair();
  envelope::Header h;
  h.version = 1;
  h.device_key = dev.public_key;
  double env_extra = 0, env_plain = 0, push_extra = 0, push_plain = 0;
  for (int i = 0; i < samples; ++i) {
    size_t n = static_cast<size_t>(std::exp(log_report(rng)));
    std::string report(n, 'r');
    randombytes_buf(h.report_id.data(), h.report_id.size());
    auto env = envelope::Seal(dev, h, crypto::Bytes(report), std::vector<crypto::PublicKey>{org.public_key});
    if (!env.ok()) return 1;
    const size_t pad = PadmeLength(n + 1, envelope::kEnvelopeMinimum) - n;  // 0x80 and zeros, inside
    env_extra += static_cast<double>(pad);
    env_plain += static_cast<double>(env->size() - pad);
    // A push of this one envelope: its signed request, padded, beside the same request unpadded.
    v1::Request r;
    r.set_device_key(dev.public_key.data(), 32);
    r.set_server_key(std::string(32, 's'));
    r.mutable_push()->add_envelopes(*env);
    size_t padded = protocol::SignRequest(dev, r).size();
    size_t unpadded = r.ByteSizeLong() + 2 + 3 + 66;  // the SignedRequest around it, without padding
    push_extra += static_cast<double>(padded - std::min(padded, unpadded) + pad);
    push_plain += static_cast<double>(unpadded - pad);
  }
  // Attachment sizes: log-uniform from 50 KB (a small photo) to 200 MB (a long video).
  std::uniform_real_distribution<double> log_media(std::log(50e3), std::log(200e6));
  double media_extra = 0, media_plain = 0;
  for (int i = 0; i < samples; ++i) {
    uint64_t s = static_cast<uint64_t>(std::exp(log_media(rng)));
    media_extra += static_cast<double>(attachment::CiphertextSize(attachment::PaddedSize(s)) - attachment::CiphertextSize(s));
    media_plain += static_cast<double>(s);
  }
  std::printf("Padding benchmark: %d reports (300 B - 30 KB, log-uniform), %d attachments (50 KB - 200 MB)\n",
              samples, samples);
  std::printf("%-44s %12.1f B   (reported; mean per report, envelope %.0f B unpadded)\n", "envelope padding per report",
              env_extra / samples, env_plain / samples);
  std::printf("%-44s %12.1f B   (reported; mean per report pushed alone)\n", "push padding per report (envelope + request)",
              push_extra / samples);
  double env_pct = 100.0 * env_extra / env_plain;
  bench::Row("envelope padding", env_pct, "<=", 25.0, "%",
             "Padmé's ~12% bound, plus the 1 KiB floor for the smallest reports");
  double per_mib = media_extra / (media_plain / 1048576.0);
  bench::Row("attachment padding per MiB of media", per_mib / 1024.0, "<=", 128.0, "KiB",
             "Padmé's bound: 12.5% of a MiB");
  return bench::failures == 0 ? 0 : 1;
}
