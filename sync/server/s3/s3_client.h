// A small S3 client for dala-server's attachments: the requests of the S3 API that an upload, an export
// and a check need (objects, and multipart uploads), over libcurl with its SigV4 signing
// (CURLOPT_AWS_SIGV4), path-style addressing, so that any S3-compatible store (AWS S3, SeaweedFS, MinIO,
// Ceph RGW, Garage) answers. Server only, never in the phone library.
//
// Every request has a connect timeout and a stall timeout, and transient failures (no connection, a 5xx,
// 429/SlowDown) are tried again a few times with a growing pause; every request this client makes is
// idempotent, so that a retry never does twice what should happen once. Every body it sends carries
// Content-MD5 (the store refuses bytes damaged on the way) and the ETag the store answers for a part or an
// object is compared with the MD5 of what was sent (a store that stored something else is caught).
//
// Thread-safety: every method may be called from any thread at once (each request takes a libcurl handle
// from a small pool, which keeps connections open between requests).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace dala::server::s3 {

// Where the attachments live: init --blobs s3://BUCKET?endpoint=URL[&region=R][&prefix=P][&timeout=S].
struct Location {
  std::string bucket;
  std::string endpoint;  // http(s)://host[:port], no path
  std::string region = "us-east-1";
  std::string prefix;    // prepended to every key (empty, or ending in '/')
  long stall_seconds = 20;  // a request that moves less than 1 KiB/s for this long has failed (timeout=)
};

// Parses and checks an s3:// URL (Boost.URL is not in this library: the syntax is small and fixed).
Result<Location> ParseUrl(std::string_view url);

// The access key and secret from the environment: DALA_S3_ACCESS_KEY_ID and DALA_S3_SECRET_ACCESS_KEY,
// else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Secrets never go in the data directory.
struct Credentials {
  std::string access_key, secret_key;
};
Result<Credentials> CredentialsFromEnvironment();

struct Part {
  int number = 0;
  uint64_t size = 0;
  std::string etag;  // as the store answered it, quotes removed
};

// Observes every request (the server's metrics): operation, HTTP status (0: no answer), seconds.
using Observer = std::function<void(const char* op, int status, double seconds)>;

class Client {
 public:
  Client(Location where, Credentials credentials, Observer observe = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Location& location() const { return where_; }

  // Objects.
  Status Put(const std::string& key, std::span<const uint8_t> body);
  Result<std::optional<uint64_t>> Size(const std::string& key);  // HEAD: nullopt if there is no such object
  // GET: the object's bytes, handed to `sink` as they arrive (false from sink ends the transfer: error).
  // Not retried once bytes were handed on.
  Status Get(const std::string& key, const std::function<bool(std::span<const uint8_t>)>& sink);
  // Bytes [offset, offset + length) of an object (fewer at its end); length >= 1.
  Result<std::string> GetRange(const std::string& key, uint64_t offset, size_t length);
  Result<std::optional<std::string>> GetSmall(const std::string& key, size_t max);  // nullopt if absent
  Status Delete(const std::string& key);  // no such object is not an error

  // Multipart uploads.
  Result<std::string> CreateUpload(const std::string& key);  // the upload id
  Result<std::vector<std::string>> ListUploads(const std::string& key);  // upload ids open for exactly `key`
  Result<std::vector<Part>> ListParts(const std::string& key, const std::string& upload_id);
  Result<std::string> UploadPart(const std::string& key, const std::string& upload_id, int number,
                                 std::span<const uint8_t> body);  // the part's ETag, checked
  // Completes the upload; a retry after a completion whose answer was lost finds the upload gone: then the
  // object is there with the expected size, or this fails.
  Status Complete(const std::string& key, const std::string& upload_id, const std::vector<Part>& parts,
                  uint64_t expected_size);
  Status Abort(const std::string& key, const std::string& upload_id);

  // Checks that the bucket exists and takes a write, a read and a delete with these credentials.
  Status Probe();

 private:
  struct Handle;
  struct Request;
  struct Answer;
  Answer Perform(const Request& r);
  Answer PerformOnce(const Request& r, bool* retryable);
  std::string Url(const std::string& key, const std::string& query) const;
  std::unique_ptr<Handle> Take();
  void Give(std::unique_ptr<Handle> h);

  Location where_;
  Credentials credentials_;
  Observer observe_;
  std::string sigv4_;  // "aws:amz:REGION:s3"
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace dala::server::s3
