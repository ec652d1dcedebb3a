#include "format/envelope.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "base/padding.h"
#include "format/manifest.h"

namespace dala::envelope {

using crypto::BoxKeyPair;
using crypto::Bytes;
using crypto::PublicKey;
using crypto::Signature;
using crypto::SigningKey;

namespace {
constexpr char kAeadLabel[] = "dala/v2/envelope-aead";

// The key commitment: BLAKE2b-256(kDomainKeyCommitment || content key). The content key is 256 random
// bits, so the hash gives nothing of it away; being signed in the body, it binds the envelope to one key.
crypto::Hash KeyCommitment(const SecretBuffer& content_key) {
  crypto::Hash out{};
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kDomainKeyCommitment.data()),
                            kDomainKeyCommitment.size());
  crypto_generichash_update(&st, content_key.data(), content_key.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

// One thread's secret scratch memory, reused from envelope to envelope: sodium_malloc maps, guards and
// locks fresh pages on every call, which cost a desk opening 100,000 envelopes more than their signatures
// and a phone sealing a batch a third of each envelope's time.
// Everything written to it is zeroed before the call that wrote it returns.
struct Scratch {
  SecretBuffer key{crypto_aead_xchacha20poly1305_ietf_KEYBYTES};
  SecretBuffer plain;
  uint8_t* Plain(size_t n) {
    if (plain.size() < n) plain = SecretBuffer(std::max<size_t>({n, 2 * plain.size(), 4096}));
    return plain.data();
  }
};

// Zeroes the first `n` bytes of `b` when it goes out of scope; a buffer grown past 1 MiB (a large report)
// is given back rather than kept locked for the thread's lifetime.
struct Wipe {
  SecretBuffer& b;
  size_t n = 0;
  ~Wipe() {
    sodium_memzero(b.data(), std::min(n, b.size()));
    if (b.size() > (1u << 20)) b = SecretBuffer();
  }
};

thread_local Scratch scratch;

std::vector<uint8_t> EnvelopeAd(const Header& h) {
  std::vector<uint8_t> ad(kAeadLabel, kAeadLabel + sizeof kAeadLabel - 1);
  ad.insert(ad.end(), h.report_id.begin(), h.report_id.end());
  for (int i = 0; i < 4; ++i) ad.push_back(static_cast<uint8_t>(h.version >> (8 * i)));
  ad.insert(ad.end(), h.device_key.begin(), h.device_key.end());
  return ad;
}

// The envelope's body and header, its shapes checked; its device signature too unless `check_signature` is
// false (OpenAgain: bytes whose signature was checked before).
Status Parse(std::span<const uint8_t> envelope, v1::EnvelopeBody* body, Header* header, bool check_signature) {
  v1::SealedEnvelope env;
  if (!env.ParseFromArray(envelope.data(), static_cast<int>(envelope.size())))
    return {Code::kVerify, "the sealed envelope is malformed"};
  if (!body->ParseFromString(env.body())) return {Code::kVerify, "the sealed envelope body is malformed"};
  if (body->report_id().size() != 16 || body->device_key().size() != 32 ||
      body->nonce().size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES || body->version() == 0 ||
      body->key_commitment().size() != crypto::Hash{}.size())
    return {Code::kVerify, "the sealed envelope has fields of the wrong size"};
  if (check_signature && !crypto::Verify(Bytes(body->device_key()), kDomain, Bytes(env.body()), Bytes(env.signature())))
    return {Code::kVerify, "the sealed envelope's device signature does not verify (altered or forged)"};
  std::memcpy(header->report_id.data(), body->report_id().data(), 16);
  header->version = body->version();
  std::memcpy(header->device_key.data(), body->device_key().data(), 32);
  header->attachments.clear();
  for (const auto& m : body->attachments()) {
    DALA_RETURN_IF_ERROR(attachment::CheckManifest(m));
    for (const auto& seen : header->attachments)
      if (seen.attachment_id() == m.attachment_id())
        return {Code::kVerify, "the sealed envelope lists one attachment twice"};
    header->attachments.push_back(m);
  }
  return Status::Ok();
}

Status ParseVerified(std::span<const uint8_t> envelope, v1::EnvelopeBody* body, Header* header) {
  return Parse(envelope, body, header, true);
}
}  // namespace

Result<std::string> Seal(const SigningKey& device, const Header& header,
                                 std::span<const uint8_t> plaintext, std::span<const PublicKey> recipients) {
  if (recipients.empty()) return Status(Code::kInternal, "no recipients to seal to");
  SecretBuffer& content_key = scratch.key;
  Wipe key_wipe{content_key, content_key.size()};
  crypto_aead_xchacha20poly1305_ietf_keygen(content_key.data());

  v1::EnvelopeBody body;
  body.set_report_id(header.report_id.data(), header.report_id.size());
  body.set_version(header.version);
  body.set_device_key(header.device_key.data(), header.device_key.size());
  for (const auto& m : header.attachments) *body.add_attachments() = m;
  for (const PublicKey& r : recipients) {
    auto* wk = body.add_keys();
    wk->set_recipient(r.data(), r.size());
    std::string sealed(crypto_box_SEALBYTES + content_key.size(), '\0');
    if (crypto_box_seal(reinterpret_cast<uint8_t*>(sealed.data()), content_key.data(), content_key.size(),
                        r.data()) != 0)
      return Status(Code::kInvalidArgument, "a recipient public key is not a usable X25519 key");
    wk->set_sealed_key(std::move(sealed));
  }
  uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  randombytes_buf(nonce, sizeof nonce);
  body.set_nonce(nonce, sizeof nonce);
  const crypto::Hash commitment = KeyCommitment(content_key);
  body.set_key_commitment(commitment.data(), commitment.size());
  // The signed report, padded (ISO/IEC 7816-4, sodium_pad) to its Padmé length: the envelope's size says
  // little about the report's (docs/protocol.md, "Padding").
  const size_t bucket = PadmeLength(plaintext.size() + 1, kEnvelopeMinimum);
  Wipe padded_wipe{scratch.plain};
  uint8_t* padded = scratch.Plain(bucket);
  padded_wipe.n = bucket;
  std::memcpy(padded, plaintext.data(), plaintext.size());
  size_t padded_len = 0;
  if (sodium_pad(&padded_len, padded, plaintext.size(), bucket, bucket) != 0 || padded_len != bucket)
    return Status(Code::kInternal, "padding the report failed");
  body.set_padded(true);
  std::string ct(padded_len + crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  auto ad = EnvelopeAd(header);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<uint8_t*>(ct.data()), &clen, padded,
                                             padded_len, ad.data(), ad.size(), nullptr, nonce, content_key.data());
  body.set_ciphertext(std::move(ct));

  v1::SealedEnvelope env;
  env.set_body(body.SerializeAsString());
  Signature sig = crypto::Sign(device, kDomain, Bytes(env.body()));
  env.set_signature(sig.data(), sig.size());
  return env.SerializeAsString();
}

Status Verify(std::span<const uint8_t> envelope, Header* header) {
  v1::EnvelopeBody body;
  return ParseVerified(envelope, &body, header);
}

namespace {

// The recipient's copy of the content key, into `content_key` (32 bytes), checked against the key
// commitment the device signed: otherwise the envelope could open to one report for one recipient and
// to another for the next.
Status UnwrapKey(const v1::EnvelopeBody& body, const BoxKeyPair& recipient, SecretBuffer& content_key) {
  const v1::WrappedKey* mine = nullptr;
  for (const auto& wk : body.keys()) {
    if (wk.recipient().size() == 32 && std::memcmp(wk.recipient().data(), recipient.public_key.data(), 32) == 0) {
      mine = &wk;
      break;
    }
  }
  if (mine == nullptr) return Status(Code::kNotFound, "the envelope is not sealed to this organisation key");
  if (mine->sealed_key().size() != crypto_box_SEALBYTES + content_key.size() ||
      crypto_box_seal_open(content_key.data(), reinterpret_cast<const uint8_t*>(mine->sealed_key().data()),
                           mine->sealed_key().size(), recipient.public_key.data(), recipient.secret_key.data()) != 0)
    return Status(Code::kVerify, "the envelope's content key does not open with this organisation key");
  return Status::Ok();
}

// The signed report inside, with `content_key`, into this thread's scratch: the plaintext is
// scratch.plain's first *len bytes.
Status DecryptToScratch(const v1::EnvelopeBody& body, const Header& header, const SecretBuffer& content_key,
                        Scratch& scratch, Wipe& plain_wipe, size_t* len) {
  const crypto::Hash commitment = KeyCommitment(content_key);
  if (body.key_commitment().size() != commitment.size() ||
      sodium_memcmp(commitment.data(), body.key_commitment().data(), commitment.size()) != 0)
    return Status(Code::kVerify, "the envelope's content key is not the one it commits to (forged)");
  const std::string& ct = body.ciphertext();
  if (ct.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Status(Code::kVerify, "the envelope's ciphertext is truncated");
  const size_t n = ct.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES;
  uint8_t* plain = scratch.Plain(n);
  plain_wipe.n = n;
  auto ad = EnvelopeAd(header);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, nullptr, reinterpret_cast<const uint8_t*>(ct.data()),
                                                 ct.size(), ad.data(), ad.size(),
                                                 reinterpret_cast<const uint8_t*>(body.nonce().data()),
                                                 content_key.data()) != 0)
    return Status(Code::kVerify, "the envelope's content failed authentication (altered)");
  if (body.padded()) {
    size_t unpadded = 0;
    if (n == 0 || sodium_unpad(&unpadded, plain, n, n) != 0)
      return Status(Code::kVerify, "the envelope's content is not padded as it says (forged)");
    *len = unpadded;
    return Status::Ok();
  }
  *len = n;
  return Status::Ok();
}

// Open() into this thread's scratch: the plaintext is scratch.plain's first *len bytes.
Status OpenToScratch(std::span<const uint8_t> envelope, const BoxKeyPair& recipient, Header* header, Scratch& scratch,
                     Wipe& plain_wipe, size_t* len, std::span<uint8_t> key_out = {}) {
  v1::EnvelopeBody body;
  DALA_RETURN_IF_ERROR(ParseVerified(envelope, &body, header));
  SecretBuffer& content_key = scratch.key;
  Wipe key_wipe{content_key, content_key.size()};
  DALA_RETURN_IF_ERROR(UnwrapKey(body, recipient, content_key));
  DALA_RETURN_IF_ERROR(DecryptToScratch(body, *header, content_key, scratch, plain_wipe, len));
  if (key_out.size() == content_key.size()) std::memcpy(key_out.data(), content_key.data(), content_key.size());
  return Status::Ok();
}

// The checks of the signed report once decrypted (OpenReport, OpenWithKey).
Result<OpenedReport> CheckInner(OpenedReport out, std::span<const uint8_t> plain, bool check_signature = true) {
  DALA_ASSIGN_OR_RETURN(out.content, check_signature ? VerifySignedReport(plain) : ReadSignedReport(plain));
  if (out.content.report_id() != IdBytes(out.header.report_id) || out.content.version() != out.header.version ||
      out.content.device_key() != std::string_view(reinterpret_cast<const char*>(out.header.device_key.data()), 32))
    return Status(Code::kVerify, "the envelope and the report inside it disagree on id, version or device (altered)");
  out.content_hash = crypto::Blake2b256(plain);
  return out;
}

}  // namespace

Result<SecretBuffer> Open(std::span<const uint8_t> envelope, const BoxKeyPair& recipient, Header* header) {
  Wipe wipe{scratch.plain};
  size_t n = 0;
  DALA_RETURN_IF_ERROR(OpenToScratch(envelope, recipient, header, scratch, wipe, &n));
  return SecretBuffer(scratch.plain.data(), n);
}

Result<OpenedReport> OpenReport(std::span<const uint8_t> envelope, const BoxKeyPair& recipient,
                                std::span<uint8_t> content_key) {
  if (!content_key.empty() && content_key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    return Status(Code::kInternal, "a content key is 32 bytes");
  OpenedReport out;
  Wipe wipe{scratch.plain};
  size_t n = 0;
  Status st = OpenToScratch(envelope, recipient, &out.header, scratch, wipe, &n, content_key);
  auto opened = st.ok() ? CheckInner(std::move(out), std::span<const uint8_t>(scratch.plain.data(), n))
                        : Result<OpenedReport>(st);
  if (!opened.ok() && !content_key.empty()) sodium_memzero(content_key.data(), content_key.size());
  return opened;
}

Result<OpenedReport> OpenAgain(std::span<const uint8_t> envelope, const crypto::Hash& opened_hash,
                               std::span<const uint8_t> content_key) {
  if (content_key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    return Status(Code::kVerify, "a content key is 32 bytes");
  const crypto::Hash h = crypto::Blake2b256(envelope);
  if (sodium_memcmp(h.data(), opened_hash.data(), h.size()) != 0)
    return Status(Code::kVerify, "the envelope is not the one opened before (its bytes changed)");
  OpenedReport out;
  v1::EnvelopeBody body;
  DALA_RETURN_IF_ERROR(Parse(envelope, &body, &out.header, false));
  SecretBuffer& key = scratch.key;  // sodium_malloc per call would cost more than the decryption
  Wipe key_wipe{key, key.size()};
  std::memcpy(key.data(), content_key.data(), key.size());
  Wipe wipe{scratch.plain};
  size_t n = 0;
  DALA_RETURN_IF_ERROR(DecryptToScratch(body, out.header, key, scratch, wipe, &n));
  return CheckInner(std::move(out), std::span<const uint8_t>(scratch.plain.data(), n), false);
}

Result<SecretBuffer> ContentKey(std::span<const uint8_t> envelope, const BoxKeyPair& recipient) {
  v1::EnvelopeBody body;
  Header header;
  DALA_RETURN_IF_ERROR(ParseVerified(envelope, &body, &header));
  SecretBuffer key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  DALA_RETURN_IF_ERROR(UnwrapKey(body, recipient, key));
  const crypto::Hash commitment = KeyCommitment(key);
  if (body.key_commitment().size() != commitment.size() ||
      sodium_memcmp(commitment.data(), body.key_commitment().data(), commitment.size()) != 0)
    return Status(Code::kVerify, "the envelope's content key is not the one it commits to (forged)");
  return key;
}

Result<OpenedReport> OpenWithKey(std::span<const uint8_t> envelope, std::span<const uint8_t> content_key) {
  if (content_key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    return Status(Code::kVerify, "a content key is 32 bytes");
  OpenedReport out;
  v1::EnvelopeBody body;
  DALA_RETURN_IF_ERROR(ParseVerified(envelope, &body, &out.header));
  SecretBuffer key(content_key.data(), content_key.size());
  Wipe wipe{scratch.plain};
  size_t n = 0;
  DALA_RETURN_IF_ERROR(DecryptToScratch(body, out.header, key, scratch, wipe, &n));
  return CheckInner(std::move(out), std::span<const uint8_t>(scratch.plain.data(), n));
}

std::vector<std::span<const uint8_t>> ScratchForTesting() { return {scratch.key.span(), scratch.plain.span()}; }

}  // namespace dala::envelope
