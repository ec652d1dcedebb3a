#include "timestamp/rfc3161.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <sodium.h>

#include <cstring>
#include <ctime>
#include <memory>

namespace dala::rfc3161 {
namespace {

template <typename T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const { F(p); }
};
template <typename T, void (*F)(T*)>
using Ptr = std::unique_ptr<T, Free<T, F>>;
using TsReq = Ptr<TS_REQ, TS_REQ_free>;
using TsResp = Ptr<TS_RESP, TS_RESP_free>;
using TstInfo = Ptr<TS_TST_INFO, TS_TST_INFO_free>;
using Imprint = Ptr<TS_MSG_IMPRINT, TS_MSG_IMPRINT_free>;
using Algor = Ptr<X509_ALGOR, X509_ALGOR_free>;
using Integer = Ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Pkcs7 = Ptr<PKCS7, PKCS7_free>;
using Store = Ptr<X509_STORE, X509_STORE_free>;
using VerifyCtx = Ptr<TS_VERIFY_CTX, TS_VERIFY_CTX_free>;
using Bio = Ptr<BIO, BIO_free_all>;
using Cert = Ptr<X509, X509_free>;

void FreeCerts(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using Certs = Ptr<STACK_OF(X509), FreeCerts>;

using Digest = std::array<uint8_t, 32>;

Digest Sha256(std::span<const uint8_t> data) {
  Digest d{};
  crypto_hash_sha256(d.data(), data.data(), data.size());
  return d;
}

// The OpenSSL reason for the last failure, for the message (and the error queue left empty).
std::string Reason() {
  const unsigned long e = ERR_peek_last_error();
  const char* r = e != 0 ? ERR_reason_error_string(e) : nullptr;
  ERR_clear_error();
  return r != nullptr ? std::string(" (") + r + ")" : std::string();
}

template <typename T, int (*I2d)(const T*, unsigned char**)>
std::string Der(const T* v) {
  const int n = I2d(v, nullptr);
  if (n <= 0) return {};
  std::string out(static_cast<size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  I2d(v, &p);
  return out;
}
int I2dReq(const TS_REQ* r, unsigned char** p) { return i2d_TS_REQ(const_cast<TS_REQ*>(r), p); }
int I2dPkcs7(const PKCS7* r, unsigned char** p) { return i2d_PKCS7(const_cast<PKCS7*>(r), p); }

// The token's time-stamp info is for SHA-256 and exactly this digest.
bool ImprintIs(TS_TST_INFO* tst, const Digest& digest) {
  TS_MSG_IMPRINT* mi = TS_TST_INFO_get_msg_imprint(tst);
  if (mi == nullptr) return false;
  const ASN1_OBJECT* alg = nullptr;
  X509_ALGOR_get0(&alg, nullptr, nullptr, TS_MSG_IMPRINT_get_algo(mi));
  const ASN1_OCTET_STRING* m = TS_MSG_IMPRINT_get_msg(mi);
  return alg != nullptr && OBJ_obj2nid(alg) == NID_sha256 && m != nullptr &&
         ASN1_STRING_length(m) == static_cast<int>(digest.size()) &&
         std::memcmp(ASN1_STRING_get0_data(m), digest.data(), digest.size()) == 0;
}

}  // namespace

Result<Request> MakeRequest(std::span<const uint8_t> data) {
  const Digest digest = Sha256(data);
  Request out;
  randombytes_buf(&out.nonce, sizeof out.nonce);
  out.nonce &= 0x7fffffffffffffffULL;  // a positive INTEGER in eight bytes
  TsReq req(TS_REQ_new());
  Algor alg(X509_ALGOR_new());
  Imprint mi(TS_MSG_IMPRINT_new());
  Integer nonce(ASN1_INTEGER_new());
  if (!req || !alg || !mi || !nonce) return Status(Code::kNoMemory, "out of memory");
  X509_ALGOR_set_md(alg.get(), EVP_sha256());
  if (TS_REQ_set_version(req.get(), 1) != 1 || TS_MSG_IMPRINT_set_algo(mi.get(), alg.get()) != 1 ||
      TS_MSG_IMPRINT_set_msg(mi.get(), const_cast<uint8_t*>(digest.data()), static_cast<int>(digest.size())) != 1 ||
      TS_REQ_set_msg_imprint(req.get(), mi.get()) != 1 || ASN1_INTEGER_set_uint64(nonce.get(), out.nonce) != 1 ||
      TS_REQ_set_nonce(req.get(), nonce.get()) != 1 || TS_REQ_set_cert_req(req.get(), 1) != 1)
    return Status(Code::kInternal, "could not make a time-stamp request" + Reason());
  out.der = Der<TS_REQ, I2dReq>(req.get());
  if (out.der.empty()) return Status(Code::kInternal, "could not encode a time-stamp request" + Reason());
  return out;
}

Result<std::string> TokenFromResponse(std::span<const uint8_t> response, const Request& request,
                                      std::span<const uint8_t> data) {
  const unsigned char* p = response.data();
  TsResp resp(d2i_TS_RESP(nullptr, &p, static_cast<long>(response.size())));
  if (!resp || p != response.data() + response.size())
    return Status(Code::kVerify, "the time-stamping authority's answer is not a TimeStampResp" + Reason());
  const long status = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp.get())));
  if (status != 0 && status != 1)  // granted, granted with modifications
    return Status(Code::kIo, "the time-stamping authority refused (status " + std::to_string(status) + ")");
  PKCS7* token = TS_RESP_get_token(resp.get());
  TS_TST_INFO* tst = TS_RESP_get_tst_info(resp.get());
  if (token == nullptr || tst == nullptr) return Status(Code::kVerify, "the time-stamping authority sent no token");
  if (!ImprintIs(tst, Sha256(data))) return Status(Code::kVerify, "the time-stamp is for other data");
  uint64_t nonce = 0;
  const ASN1_INTEGER* n = TS_TST_INFO_get_nonce(tst);
  if (n == nullptr || ASN1_INTEGER_get_uint64(&nonce, n) != 1 || nonce != request.nonce)
    return Status(Code::kVerify, "the time-stamp does not answer this request (nonce)");
  std::string der = Der<PKCS7, I2dPkcs7>(token);
  if (der.empty()) return Status(Code::kInternal, "could not encode the time-stamp token" + Reason());
  return der;
}

Result<Stamp> Verify(std::span<const uint8_t> token, std::span<const uint8_t> data, const std::string& trusted_pem) {
  const unsigned char* p = token.data();
  Pkcs7 tok(d2i_PKCS7(nullptr, &p, static_cast<long>(token.size())));
  if (!tok || p != token.data() + token.size()) return Status(Code::kVerify, "not a time-stamp token" + Reason());
  TstInfo tst(PKCS7_to_TS_TST_INFO(tok.get()));
  if (!tst) return Status(Code::kVerify, "not a time-stamp token" + Reason());
  const Digest digest = Sha256(data);
  if (!ImprintIs(tst.get(), digest)) return Status(Code::kVerify, "the time-stamp is for other data");

  // The trusted certificates: trust anchors (a TSA's own certificate too, not only a root), and the pool
  // in which a token that does not carry its signer's certificate finds it.
  Store store(X509_STORE_new());
  Certs pool(sk_X509_new_null());
  Bio pem(BIO_new_mem_buf(trusted_pem.data(), static_cast<int>(trusted_pem.size())));
  if (!store || !pool || !pem) return Status(Code::kNoMemory, "out of memory");
  for (;;) {
    Cert c(PEM_read_bio_X509(pem.get(), nullptr, nullptr, nullptr));
    if (!c) break;
    if (X509_STORE_add_cert(store.get(), c.get()) != 1 || sk_X509_push(pool.get(), c.get()) == 0)
      return Status(Code::kInternal, "could not hold a trusted certificate" + Reason());
    c.release();  // the pool owns it now (the store took its own reference)
  }
  ERR_clear_error();  // the end of the PEM text
  if (sk_X509_num(pool.get()) == 0) return Status(Code::kInvalidArgument, "no trusted TSA certificate was given");
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN);

  Certs signers_pool(X509_chain_up_ref(pool.get()));
  VerifyCtx ctx(TS_VERIFY_CTX_new());
  auto* imprint = static_cast<unsigned char*>(OPENSSL_malloc(digest.size()));
  if (!ctx || !signers_pool || imprint == nullptr) {
    OPENSSL_free(imprint);
    return Status(Code::kNoMemory, "out of memory");
  }
  std::memcpy(imprint, digest.data(), digest.size());
  TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_IMPRINT);
  TS_VERIFY_CTX_set_imprint(ctx.get(), imprint, static_cast<long>(digest.size()));  // the context owns these
  TS_VERIFY_CTX_set_store(ctx.get(), store.release());
  TS_VERIFY_CTX_set_certs(ctx.get(), signers_pool.release());
  if (TS_RESP_verify_token(ctx.get(), tok.get()) != 1)
    return Status(Code::kVerify, "the time-stamp was not signed by a trusted time-stamping authority, or is "
                                 "damaged" + Reason());

  Stamp out;
  std::tm tm{};
  if (ASN1_TIME_to_tm(TS_TST_INFO_get_time(tst.get()), &tm) != 1)
    return Status(Code::kVerify, "the time-stamp's time is malformed");
  out.time_ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  if (STACK_OF(X509)* signers = PKCS7_get0_signers(tok.get(), pool.get(), 0)) {
    if (sk_X509_num(signers) > 0) {
      char name[256];
      X509_NAME_oneline(X509_get_subject_name(sk_X509_value(signers, 0)), name, sizeof name);
      out.tsa = name;
    }
    sk_X509_free(signers);
  }
  ERR_clear_error();
  return out;
}

}  // namespace dala::rfc3161
