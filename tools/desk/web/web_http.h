// dala desk serve's HTTP front end (Beast, this one translation unit): loopback by default; any other
// address only with TLS. Each connection is served on its own thread (at most 32 at once).
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "desk/desk_store.h"

namespace dala::desk::web {

struct ServeOptions {
  std::string listen = "127.0.0.1:0";  // HOST:PORT ([V6]:PORT); port 0: any free one
  std::string tls_cert, tls_key;       // PEM files; required unless the address is a loopback one
  // The name browsers use, HOST or HOST:PORT (the certificate's name): requests must name it, and the
  // printed address uses it. Empty: the listen address. Required for 0.0.0.0 and [::].
  std::string name;
  // A directory of the organisation's own map tiles, DIR/Z/X/Y.png (web/map_tiles.h); empty: maps are drawn
  // without tiles.
  std::string tiles_dir;
};

class WebServer {
 public:
  // Serves `store` (which must outlive the server) until Stop().
  static Result<std::unique_ptr<WebServer>> Start(DeskStore& store, const ServeOptions& options);
  ~WebServer();
  // The address to open, with its one-time login token.
  const std::string& url() const;
  // Stops accepting, closes every connection and returns once every thread is done.
  void Stop();

  struct Impl;

 private:
  explicit WebServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dala::desk::web
