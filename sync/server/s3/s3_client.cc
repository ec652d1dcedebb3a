// The S3 client: libcurl requests signed with SigV4, answers read with pugixml (both from Debian).
#include "server/s3/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <pugixml.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace dala::server::s3 {
namespace {

constexpr long kConnectTimeoutMs = 5000;
constexpr long kRequestTimeoutS = 600;    // a whole request, even a large part on a slow link
constexpr int kAttempts = 4;              // transient failures: tried again after 0.2, 0.8 and 3.2 s
constexpr size_t kMaxAnswer = 4 << 20;    // an XML answer larger than this is not one of ours
constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::once_flag g_curl_once;

std::string Md5(std::span<const uint8_t> data) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), d, &n, EVP_md5(), nullptr);
  return std::string(reinterpret_cast<char*>(d), n);
}

std::string Hex(std::string_view s) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(k[c >> 4]);
    out.push_back(k[c & 15]);
  }
  return out;
}

std::string Base64(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Unquote(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

// Percent-encodes a query value or a key (RFC 3986 unreserved characters kept; '/' kept in keys).
std::string Encode(std::string_view s, bool keep_slash) {
  static const char* k = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(k[c >> 4]);
      out.push_back(k[c & 15]);
    }
  }
  return out;
}

// A query string as SigV4 signs it: every name with '=', values encoded, names in order (libcurl 7.88
// signs the query as given, without sorting or completing it).
std::string Query(std::vector<std::pair<std::string, std::string>> params) {
  std::sort(params.begin(), params.end());
  std::string q;
  for (const auto& [name, value] : params) q += (q.empty() ? "" : "&") + name + "=" + Encode(value, false);
  return q;
}

// The S3 error code of an answer's XML body ("NoSuchUpload"...), if it has one.
std::string ErrorCode(const std::string& body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return {};
  return doc.child("Error").child_value("Code");
}

bool Transient(long status) { return status == 429 || status == 500 || status == 502 || status == 503 || status == 504; }

}  // namespace

Result<Location> ParseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "s3://";
  if (!url.starts_with(kScheme)) return Status(Code::kInvalidArgument, "an S3 location starts with s3://");
  url.remove_prefix(kScheme.size());
  Location where;
  const size_t q = url.find('?');
  where.bucket = std::string(url.substr(0, q));
  // Bucket names as S3 allows them (3-63 lower-case letters, digits, dots and hyphens).
  bool good = where.bucket.size() >= 3 && where.bucket.size() <= 63;
  for (char c : where.bucket) good = good && (std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-');
  if (!good) return Status(Code::kInvalidArgument, "the S3 bucket name must be 3 to 63 lower-case letters, digits, dots or hyphens");
  std::string_view query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) return Status(Code::kInvalidArgument, "an S3 location's settings are name=value");
    std::string_view name = pair.substr(0, eq), value = pair.substr(eq + 1);
    if (name == "endpoint") {
      where.endpoint = std::string(value);
    } else if (name == "region") {
      where.region = std::string(value);
    } else if (name == "prefix") {
      where.prefix = std::string(value);
    } else if (name == "timeout") {
      char* end = nullptr;
      const std::string v(value);
      where.stall_seconds = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || where.stall_seconds < 1 || where.stall_seconds > 3600)
        return Status(Code::kInvalidArgument, "the S3 timeout= is whole seconds, 1 to 3600");
    } else {
      return Status(Code::kInvalidArgument, "an S3 location takes endpoint=, region=, prefix= and timeout=, not '" +
                                                std::string(name) + "='");
    }
  }
  const bool http = where.endpoint.starts_with("http://"), https = where.endpoint.starts_with("https://");
  if (!http && !https) return Status(Code::kInvalidArgument, "an S3 location needs endpoint=http(s)://HOST[:PORT]");
  const std::string_view rest = std::string_view(where.endpoint).substr(http ? 7 : 8);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos)
    return Status(Code::kInvalidArgument, "the S3 endpoint is scheme://HOST[:PORT] with no path");
  for (char c : where.region)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-')
      return Status(Code::kInvalidArgument, "the S3 region is letters, digits and hyphens");
  if (where.region.empty()) return Status(Code::kInvalidArgument, "the S3 region is empty");
  for (char c : where.prefix)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '/')
      return Status(Code::kInvalidArgument, "the S3 prefix is letters, digits and - _ . /");
  if (!where.prefix.empty() && where.prefix.back() != '/') where.prefix.push_back('/');
  if (where.prefix.starts_with("/")) return Status(Code::kInvalidArgument, "the S3 prefix does not start with /");
  return where;
}

Result<Credentials> CredentialsFromEnvironment() {
  for (auto [id, secret] : {std::pair{"DALA_S3_ACCESS_KEY_ID", "DALA_S3_SECRET_ACCESS_KEY"},
                            std::pair{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}}) {
    const char* a = std::getenv(id);
    const char* s = std::getenv(secret);
    if (a != nullptr && s != nullptr && *a != '\0' && *s != '\0') {
      Credentials c{a, s};
      if (c.access_key.find(':') != std::string::npos)
        return Status(Code::kInvalidArgument, std::string(id) + " must not contain ':'");
      return c;
    }
  }
  return Status(Code::kInvalidArgument,
                "attachments on S3 need DALA_S3_ACCESS_KEY_ID and DALA_S3_SECRET_ACCESS_KEY in the environment "
                "(docs/operations.md)");
}

struct Client::Handle {
  CURL* curl = curl_easy_init();
  ~Handle() { curl_easy_cleanup(curl); }
};

struct Client::Pool {
  std::mutex mu;
  std::vector<std::unique_ptr<Handle>> idle;
};

struct Client::Request {
  const char* op = "";
  const char* method = "GET";
  std::string key{};
  std::string query{};
  std::span<const uint8_t> body{};
  bool has_body = false;
  std::string md5{};  // of body, if the caller has it already
  const std::function<bool(std::span<const uint8_t>)>* sink = nullptr;
  std::string range{};  // GET: "FIRST-LAST" (bytes, inclusive), or empty for the whole object
};

struct Client::Answer {
  long status = 0;  // 0: no answer (connection failed); see error
  std::string body, etag, error;
  uint64_t length = 0;
  bool have_length = false;
  bool sink_refused = false;
};

Client::Client(Location where, Credentials credentials, Observer observe)
    : where_(std::move(where)), credentials_(std::move(credentials)), observe_(std::move(observe)),
      sigv4_("aws:amz:" + where_.region + ":s3"), pool_(std::make_unique<Pool>()) {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Client::~Client() { sodium_memzero(credentials_.secret_key.data(), credentials_.secret_key.size()); }

std::unique_ptr<Client::Handle> Client::Take() {
  {
    std::lock_guard lock(pool_->mu);
    if (!pool_->idle.empty()) {
      auto h = std::move(pool_->idle.back());
      pool_->idle.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void Client::Give(std::unique_ptr<Handle> h) {
  std::lock_guard lock(pool_->mu);
  if (pool_->idle.size() < 16) pool_->idle.push_back(std::move(h));
}

std::string Client::Url(const std::string& key, const std::string& query) const {
  std::string url = where_.endpoint + "/" + where_.bucket + "/" + Encode(key, true);
  if (!query.empty()) url += "?" + query;
  return url;
}

Client::Answer Client::PerformOnce(const Request& r, bool* retryable) {
  Answer a;
  auto h = Take();
  CURL* c = h->curl;
  curl_easy_reset(c);
  struct Ctx {
    const Request* r;
    Answer* a;
    CURL* c;
    size_t at = 0;
  } ctx{&r, &a, c};
  curl_easy_setopt(c, CURLOPT_URL, Url(r.key, r.query).c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4_.c_str());
  curl_easy_setopt(c, CURLOPT_USERNAME, credentials_.access_key.c_str());
  curl_easy_setopt(c, CURLOPT_PASSWORD, credentials_.secret_key.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, where_.stall_seconds);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, kRequestTimeoutS);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  if (!r.range.empty()) curl_easy_setopt(c, CURLOPT_RANGE, r.range.c_str());
  curl_slist* headers = nullptr;
  std::string md5_header;
  if (r.has_body) {
    md5_header = "Content-MD5: " + Base64(r.md5.empty() ? Md5(r.body) : r.md5);
    headers = curl_slist_append(headers, md5_header.c_str());
    // The body is not part of the signature (hashing it twice more would cost more than the upload):
    // Content-MD5 protects it on the way, the ETag check after, TLS against someone on the path.
    headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  } else {
    headers = curl_slist_append(headers, (std::string("x-amz-content-sha256: ") + kEmptySha256).c_str());
  }
  // (No "Expect:" to turn 100-continue off: libcurl 7.88 signs that empty header but does not send it.)
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const std::string method = r.method;
  if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (method == "PUT") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    curl_easy_setopt(c, CURLOPT_READDATA, &ctx);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, +[](char* buf, size_t size, size_t n, void* p) -> size_t {
      auto* x = static_cast<Ctx*>(p);
      size_t take = std::min(size * n, x->r->body.size() - x->at);
      std::memcpy(buf, x->r->body.data() + x->at, take);
      x->at += take;
      return take;
    });
  } else if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.body.empty() ? "" : reinterpret_cast<const char*>(r.body.data()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  } else if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method);
  }
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &ctx);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, +[](char* buf, size_t size, size_t n, void* p) -> size_t {
    auto* x = static_cast<Ctx*>(p);
    std::string_view line(buf, size * n);
    if (line.size() > 5 && strncasecmp(line.data(), "ETag:", 5) == 0) x->a->etag = Unquote(std::string(line.substr(5)));
    if (x->a->etag.starts_with(" ")) x->a->etag = Unquote(x->a->etag.substr(x->a->etag.find_first_not_of(' ')));
    return size * n;
  });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* buf, size_t size, size_t n, void* p) -> size_t {
    auto* x = static_cast<Ctx*>(p);
    long status = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &status);
    if (x->r->sink != nullptr && status / 100 == 2) {
      if (!(*x->r->sink)({reinterpret_cast<const uint8_t*>(buf), size * n})) {
        x->a->sink_refused = true;
        return 0;
      }
      x->at += size * n;  // bytes handed on: not retried
      return size * n;
    }
    if (x->a->body.size() + size * n > kMaxAnswer) return 0;
    x->a->body.append(buf, size * n);
    return size * n;
  });
  const auto t0 = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(c);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  curl_slist_free_all(headers);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    curl_off_t len = -1;
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len >= 0) {
      a.length = static_cast<uint64_t>(len);
      a.have_length = true;
    }
  } else {
    a.status = 0;
    a.error = curl_easy_strerror(rc);
  }
  if (observe_) observe_(r.op, static_cast<int>(a.status), seconds);
  *retryable = !a.sink_refused && (r.sink == nullptr || ctx.at == 0) &&
               ((a.status == 0 && rc != CURLE_WRITE_ERROR) || Transient(a.status));
  if (rc == CURLE_OK || rc == CURLE_HTTP_RETURNED_ERROR) Give(std::move(h));  // else: its connection is suspect
  return a;
}

Client::Answer Client::Perform(const Request& r) {
  Answer a;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 << (2 * (attempt - 1))));
    bool retry = false;
    a = PerformOnce(r, &retry);
    if (!retry) break;
  }
  return a;
}

namespace {

// What went wrong, in words for the operator's log: the operation, and the store's answer (never a key,
// a secret or a body).
Status Failed(const char* op, long status, const std::string& body, const std::string& error) {
  if (status == 0) return Status(Code::kIo, std::string("S3 ") + op + ": no answer from the store (" + error + ")");
  std::string code = ErrorCode(body);
  const Code c = status == 403 ? Code::kPermission : status == 404 ? Code::kNotFound : Code::kIo;
  return Status(c, std::string("S3 ") + op + ": the store answered HTTP " + std::to_string(status) +
                       (code.empty() ? "" : " " + code));
}

}  // namespace

Status Client::Put(const std::string& key, std::span<const uint8_t> body) {
  Request r{"put", "PUT", key, "", body, true, Md5(body)};
  Answer a = Perform(r);
  if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  if (Hex(r.md5) != a.etag) return Status(Code::kCorrupt, "S3 put: the store's ETag is not the MD5 of what was sent");
  return Status::Ok();
}

Result<std::optional<uint64_t>> Client::Size(const std::string& key) {
  Request r{"head", "HEAD", key, ""};
  Answer a = Perform(r);
  if (a.status == 404) return std::optional<uint64_t>();
  if (a.status != 200 || !a.have_length) return Failed(r.op, a.status, a.body, a.error);
  return std::optional<uint64_t>(a.length);
}

Status Client::Get(const std::string& key, const std::function<bool(std::span<const uint8_t>)>& sink) {
  Request r{"get", "GET", key, ""};
  r.sink = &sink;
  Answer a = Perform(r);
  if (a.sink_refused) return Status(Code::kIo, "S3 get: the object could not be written where it was asked for");
  if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  return Status::Ok();
}

Result<std::string> Client::GetRange(const std::string& key, uint64_t offset, size_t length) {
  std::string out;
  std::function<bool(std::span<const uint8_t>)> sink = [&](std::span<const uint8_t> b) {
    if (out.size() + b.size() > length) return false;  // more than asked (or a retry's second copy)
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return true;
  };
  Request r{"get", "GET", key, ""};
  r.sink = &sink;
  r.range = std::to_string(offset) + "-" + std::to_string(offset + length - 1);
  Answer a = Perform(r);
  if (a.sink_refused) return Status(Code::kIo, "S3 get: more bytes came back than the range asked");
  if (a.status != 206 && a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  if (a.status == 200 && offset != 0) return Status(Code::kIo, "S3 get: the server ignored the range");
  return out;
}

Result<std::optional<std::string>> Client::GetSmall(const std::string& key, size_t max) {
  std::string out;
  bool too_large = false;
  std::function<bool(std::span<const uint8_t>)> sink = [&](std::span<const uint8_t> b) {
    if (out.size() + b.size() > max) {
      too_large = true;
      return false;
    }
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return true;
  };
  Request r{"get", "GET", key, ""};
  r.sink = &sink;
  Answer a = Perform(r);
  if (too_large) return Status(Code::kTooLarge, "S3 get: the object is larger than expected");
  if (a.status == 404) return std::optional<std::string>();
  if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  return std::optional<std::string>(std::move(out));
}

Status Client::Delete(const std::string& key) {
  Request r{"delete", "DELETE", key, ""};
  Answer a = Perform(r);
  if (a.status == 204 || a.status == 200 || a.status == 404) return Status::Ok();
  return Failed(r.op, a.status, a.body, a.error);
}

Result<std::string> Client::CreateUpload(const std::string& key) {
  Request r{"create_upload", "POST", key, Query({{"uploads", ""}})};
  r.has_body = false;
  Answer a = Perform(r);
  if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  pugi::xml_document doc;
  if (!doc.load_buffer(a.body.data(), a.body.size())) return Status(Code::kCorrupt, "S3 create_upload: not XML");
  std::string id = doc.child("InitiateMultipartUploadResult").child_value("UploadId");
  if (id.empty()) return Status(Code::kCorrupt, "S3 create_upload: no upload id in the answer");
  return id;
}

Result<std::vector<std::string>> Client::ListUploads(const std::string& key) {
  std::vector<std::string> ids;
  std::string key_marker, id_marker;
  for (int page = 0; page < 1000; ++page) {
    std::vector<std::pair<std::string, std::string>> q = {{"uploads", ""}, {"prefix", key}};
    if (!key_marker.empty()) q.insert(q.end(), {{"key-marker", key_marker}, {"upload-id-marker", id_marker}});
    Request r{"list_uploads", "GET", "", Query(std::move(q))};
    Answer a = Perform(r);
    if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
    pugi::xml_document doc;
    if (!doc.load_buffer(a.body.data(), a.body.size())) return Status(Code::kCorrupt, "S3 list_uploads: not XML");
    auto root = doc.child("ListMultipartUploadsResult");
    for (auto u : root.children("Upload"))
      if (key == u.child_value("Key")) ids.emplace_back(u.child_value("UploadId"));
    if (std::string_view(root.child_value("IsTruncated")) != "true") return ids;
    std::string next_key = root.child_value("NextKeyMarker"), next_id = root.child_value("NextUploadIdMarker");
    if (next_key.empty() || (next_key == key_marker && next_id == id_marker)) return ids;
    key_marker = next_key;
    id_marker = next_id;
  }
  return Status(Code::kCorrupt, "S3 list_uploads: the listing never ended");
}

Result<std::vector<Part>> Client::ListParts(const std::string& key, const std::string& upload_id) {
  std::vector<Part> parts;
  std::string marker;
  for (int page = 0; page < 1000; ++page) {
    std::vector<std::pair<std::string, std::string>> q = {{"uploadId", upload_id}};
    if (!marker.empty()) q.emplace_back("part-number-marker", marker);
    Request r{"list_parts", "GET", key, Query(std::move(q))};
    Answer a = Perform(r);
    if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
    pugi::xml_document doc;
    if (!doc.load_buffer(a.body.data(), a.body.size())) return Status(Code::kCorrupt, "S3 list_parts: not XML");
    auto root = doc.child("ListPartsResult");
    for (auto p : root.children("Part")) {
      Part part;
      part.number = std::atoi(p.child_value("PartNumber"));
      part.size = std::strtoull(p.child_value("Size"), nullptr, 10);
      part.etag = Unquote(p.child_value("ETag"));
      parts.push_back(std::move(part));
    }
    if (std::string_view(root.child_value("IsTruncated")) != "true") return parts;
    std::string next = root.child_value("NextPartNumberMarker");
    if (next.empty() || next == marker) return parts;
    marker = next;
  }
  return Status(Code::kCorrupt, "S3 list_parts: the listing never ended");
}

Result<std::string> Client::UploadPart(const std::string& key, const std::string& upload_id, int number,
                                       std::span<const uint8_t> body) {
  Request r{"upload_part", "PUT", key, Query({{"partNumber", std::to_string(number)}, {"uploadId", upload_id}}), body,
            true, Md5(body)};
  Answer a = Perform(r);
  if (a.status != 200) return Failed(r.op, a.status, a.body, a.error);
  if (Hex(r.md5) != a.etag)
    return Status(Code::kCorrupt, "S3 upload_part: the store's ETag is not the MD5 of what was sent");
  return a.etag;
}

Status Client::Complete(const std::string& key, const std::string& upload_id, const std::vector<Part>& parts,
                        uint64_t expected_size) {
  std::string xml = "<CompleteMultipartUpload>";
  for (const auto& p : parts)
    xml += "<Part><PartNumber>" + std::to_string(p.number) + "</PartNumber><ETag>\"" + p.etag + "\"</ETag></Part>";
  xml += "</CompleteMultipartUpload>";
  Request r{"complete_upload", "POST", key, Query({{"uploadId", upload_id}}),
            {reinterpret_cast<const uint8_t*>(xml.data()), xml.size()}, true};
  Answer a = Perform(r);
  // S3 may answer 200 and then an error in the body (the completion failed after the answer began).
  const std::string code = a.status == 200 ? ErrorCode(a.body) : std::string();
  if (a.status != 200 || !code.empty()) {
    if (a.status == 404 || code == "NoSuchUpload") {  // completed already (an answer lost), or gone
      DALA_ASSIGN_OR_RETURN(std::optional<uint64_t> size, Size(key));
      if (size && *size == expected_size) return Status::Ok();
    }
    return Failed(r.op, a.status == 200 ? 500 : a.status, a.body, a.error);
  }
  DALA_ASSIGN_OR_RETURN(std::optional<uint64_t> size, Size(key));
  if (!size || *size != expected_size)
    return Status(Code::kCorrupt, "S3 complete_upload: the object the store made has the wrong size");
  return Status::Ok();
}

Status Client::Abort(const std::string& key, const std::string& upload_id) {
  Request r{"abort_upload", "DELETE", key, Query({{"uploadId", upload_id}})};
  Answer a = Perform(r);
  if (a.status == 204 || a.status == 200 || a.status == 404) return Status::Ok();
  return Failed(r.op, a.status, a.body, a.error);
}

Status Client::Probe() {
  uint8_t random[16];
  randombytes_buf(random, sizeof random);
  const std::string key = where_.prefix + ".dala-probe-" + Hex({reinterpret_cast<const char*>(random), sizeof random});
  const std::string body = "dala-server checks it can write here\n";
  DALA_RETURN_IF_ERROR(Put(key, {reinterpret_cast<const uint8_t*>(body.data()), body.size()}));
  DALA_ASSIGN_OR_RETURN(std::optional<std::string> back, GetSmall(key, 4096));
  DALA_RETURN_IF_ERROR(Delete(key));
  if (!back || *back != body) return Status(Code::kCorrupt, "S3: the store answered a read with other bytes than were written");
  return Status::Ok();
}

}  // namespace dala::server::s3
