// The desk's web application without its transport (docs/desk.md, "The web desk"): the one-time login
// token and sessions, CSRF checks, routing, the custody entries of views, annotations and exports, and
// attachments by range. web_http.cc carries it over HTTP (Beast).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "desk/desk_media.h"
#include "desk/desk_store.h"
#include "desk/web/map_tiles.h"

namespace dala::desk::web {

struct Request {
  std::string method;  // GET, POST, HEAD
  std::string path;    // decoded, no query
  std::vector<std::pair<std::string, std::string>> query, form;  // decoded parameters
  std::string cookie;  // the Cookie header
  std::string origin;  // the Origin header, if any
  std::string range;   // the Range header, if any
};

struct Response {
  unsigned status = 200;
  std::string content_type = "text/html; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // An attachment: [offset, offset + length) of `media`, streamed instead of body.
  std::shared_ptr<MediaReader> media;
  uint64_t offset = 0, length = 0;
};

class App {
 public:
  // `origin`: the desk's own scheme://host:port (requests that change something must come from it);
  // `secure`: served over TLS (cookies marked Secure).
  // `tiles`: the organisation's own map tiles (dala desk serve --tiles), or none.
  App(DeskStore& store, std::string origin, bool secure, std::unique_ptr<TileSource> tiles = nullptr);
  // The one-time login URL's token (32 random bytes, base64url).
  const std::string& login_token() const { return token_; }
  // The secret path every page lives under, "/RANDOM/".
  const std::string& base() const { return base_; }
  // Thread-safe.
  Response Handle(const Request& r);

 private:
  struct Session {
    std::string csrf;
    int64_t last_ms = 0;
    std::map<std::string, bool> media_logged;
  };
  Response Login(const Request& r);
  Response Route(const Request& r, Session& s, const std::string& sid);
  Response Reports(const Request& r, Session& s);
  Response Report(int64_t rid, Session& s);
  Response Media(const Request& r, int64_t rid, const std::string& att, Session& s);
  Response MapTile(const std::string& zxy);
  Response Case(const Request& r, int64_t rid);
  Response Note(const Request& r, int64_t rid);
  Response Export(const Request& r);
  Response Evidence(int64_t rid);
  Response CustodyExport();
  Status Log(std::string_view action, std::string_view report, std::string_view detail);
  std::shared_ptr<MediaReader> Reader(const AttachmentRow& a);

  DeskStore& store_;
  std::string origin_;
  bool secure_;
  std::unique_ptr<TileSource> tiles_;
  std::mutex mu_;  // the store's connection, the sessions, the media cache
  std::string token_;
  std::string base_;
  bool token_used_ = false;
  std::map<std::string, Session> sessions_;
  std::map<std::string, std::shared_ptr<MediaReader>> media_;  // by file, the last few
  std::vector<std::string> media_order_;
};

// The URL to print: origin + "/login?token=" + token.
std::string LoginUrl(const App& app, const std::string& origin);

}  // namespace dala::desk::web
