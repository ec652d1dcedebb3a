#include "server/http_server.h"

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <future>
#include <chrono>
#include <ctime>
#include <limits>
#include <variant>
#include <cstdio>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "base/clock.h"
#include "base/failpoint.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "server/server_metrics.h"

namespace dala::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

std::string Q(std::string_view s) { return JsonString(s); }  // our own short, known-safe values

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

// The client's address for the log: the connection's peer, or, when that peer is one of the configured
// proxies, the first address in X-Forwarded-For (read from the right) that is not one of them. A client
// cannot forge its way in: hops it wrote itself are left of the ones the trusted proxies appended.
std::string ClientAddress(const std::string& peer, std::string_view forwarded_for,
                          const std::vector<std::string>& trusted_proxies) {
  // An IPv4 peer on a dual-stack socket reads as ::ffff:a.b.c.d; compared as a.b.c.d.
  auto plain = [](std::string_view a) { return a.starts_with("::ffff:") && a.find('.') != a.npos ? a.substr(7) : a; };
  auto trusted = [&](std::string_view a) {
    for (const auto& t : trusted_proxies)
      if (plain(t) == plain(a)) return true;
    return false;
  };
  std::string client(plain(peer));
  while (trusted(client) && !forwarded_for.empty()) {
    auto comma = forwarded_for.rfind(',');
    std::string_view hop = Trim(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    forwarded_for = comma == std::string_view::npos ? std::string_view() : forwarded_for.substr(0, comma);
    if (hop.empty()) break;
    client.assign(hop.substr(0, 64));
  }
  return client;
}

// One per connection, shared with Stop() and Admit(): lets them close connections waiting for a request.
// alive/busy/waiting_since are written on the connection's strand and read by the acceptor to choose
// whom to evict; the close itself runs on the connection's strand.
struct Conn {
  asio::any_io_executor ex;
  beast::tcp_stream* tcp = nullptr;
  std::atomic<bool> alive{true};   // false once the session ended (its stream is gone)
  std::atomic<bool> busy{false};
  std::atomic<bool> evicted{false};
  std::atomic<int64_t> waiting_since{0};  // steady clock ns: accepted, or its last answer went out
};

constexpr size_t kFreeBodyBytes = 64u << 10;  // per connection, outside the shared body budget

struct HttpServer::Impl {
  std::mutex conns_mu;
  std::vector<std::weak_ptr<Conn>> conns;
  ServerCore& core;
  const HttpOptions fixed;  // what Reload cannot change: the address, threads, body limits
  // The settings a reload can change and the TLS context, taken whole by each connection and request.
  mutable std::mutex live_mu;
  std::shared_ptr<const HttpOptions> live;
  std::shared_ptr<ssl::context> tls;
  std::shared_ptr<const HttpOptions> Live() const {
    std::lock_guard lock(live_mu);
    return live;
  }
  std::shared_ptr<ssl::context> Tls() const {
    std::lock_guard lock(live_mu);
    return tls;
  }
  // The log's "peer" field: only when the operator asked for client addresses.
  std::string Peer(const std::string& address) const {
    return Live()->log_client_addresses && !address.empty() ? ",\"peer\":" + Q(address) : std::string();
  }
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::atomic<bool> stopping{false};
  std::atomic<size_t> connections{0};
  std::atomic<size_t> buffered{0};  // body bytes reserved beyond each connection's free 64 KiB
  std::atomic<uint64_t> served{0};
  asio::thread_pool storage_pool{2};  // upload chunks: hash, write, fdatasync
  asio::thread_pool export_pool{1};   // desks' pulls (POST /v2/export): one at a time, never in uploads' way
  uint16_t bound_port = 0;

  Impl(ServerCore& c, HttpOptions o) : core(c), fixed(o), live(std::make_shared<const HttpOptions>(std::move(o))) {}

  // Hands the request to the core and waits for its answer without blocking this I/O thread (pushes are
  // answered by the storage writer after its group commit).
  asio::awaitable<HttpResult> Call(const std::string& method, const std::string& target, const std::string& ctype,
                                   const std::string& body) {
    struct Slot {
      asio::steady_timer timer;
      HttpResult result;
      explicit Slot(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    };
    auto slot = std::make_shared<Slot>(co_await asio::this_coro::executor);
    core.HandleAsync(method, target, ctype, body, [slot](HttpResult r) {
      asio::post(slot->timer.get_executor(), [slot, r = std::move(r)]() mutable {
        slot->result = std::move(r);
        slot->timer.cancel();
      });
    });
    co_await slot->timer.async_wait(kTuple);
    co_return std::move(slot->result);
  }

  // GET /metrics on the metrics listener, or from a loopback client no proxy forwarded; otherwise the core
  // answers, and a refused /metrics gets the 404 of any path the core does not know.
  asio::awaitable<HttpResult> Route(const std::string& peer, const http::request<http::string_body>& req) {
    Failpoint("server.io.route");  // on this I/O thread (the watchdog test holds it here)
    const bool metrics = req.target() == kMetricsPath && req.method() == http::verb::get;
    const bool forwarded = req.count("X-Forwarded-For") + req.count("Forwarded") + req.count("X-Real-IP") > 0;
    const HttpOptions& opt = fixed;
    if (metrics && (opt.metrics_only || MetricsClientAllowed(peer, forwarded)))
      co_return HttpResult{200, metrics::kContentType, core.metrics().Render()};
    if (opt.metrics_only) co_return HttpResult{404, "text/plain", "not found\n"};
    if (req.target() == protocol::kPathExport) {
      // A desk's pull reads the database and the attachment store (S3 may take a while): on a pool of its
      // own, never on this I/O thread nor on the uploads' storage pool.
      // (Arguments, not captures: a coroutine's frame keeps its parameters, not the lambda that made it.)
      auto pull = [](ServerCore& c, std::string method, std::string body) -> asio::awaitable<HttpResult> {
        co_return c.Handle(method, protocol::kPathExport, std::string(), body);
      };
      co_return co_await asio::co_spawn(export_pool, pull(core, std::string(req.method_string()), req.body()),
                                        asio::use_awaitable);
    }
    co_return co_await Call(std::string(req.method_string()), std::string(req.target()),
                            std::string(req[http::field::content_type]), req.body());
  }

  // Reads exactly n bytes within the body timeout. Plain TCP reads the socket itself (one timer per call
  // instead of one per read); TLS goes through its stream.
  template <typename Stream>
  asio::awaitable<bool> ReadExactly(Stream& stream, beast::tcp_stream& tcp_layer, uint8_t* p, size_t n) {
    using namespace asio::experimental::awaitable_operators;
    const auto live_opt = Live();
    const HttpOptions& opt = *live_opt;
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::seconds(opt.body_timeout_s));
      auto r = co_await (asio::async_read(tcp_layer.socket(), asio::buffer(p, n), kTuple) || timer.async_wait(kTuple));
      co_return r.index() == 0 && !std::get<0>(std::get<0>(r)) && std::get<1>(std::get<0>(r)) == n;
    } else {
      tcp_layer.expires_after(std::chrono::seconds(opt.body_timeout_s));
      auto [ec, got] = co_await asio::async_read(stream, asio::buffer(p, n), kTuple);
      co_return !ec && got == n;
    }
  }

  // Reads an upload body chunk by chunk into the core's session. *dropped: the connection failed mid-body.
  template <typename Stream>
  asio::awaitable<HttpResult> Upload(Stream& stream, beast::tcp_stream& tcp_layer, beast::flat_buffer& buffer,
                                     http::request_parser<http::empty_body>&& head, bool* body_done, bool* dropped,
                                     size_t* bytes_in) {
    auto len = head.content_length();
    if (!len) {
      *body_done = head.is_done();
      co_return HttpResult{411, "text/plain", "an upload needs a Content-Length\n"};
    }
    const std::string request_header(head.get()[protocol::kUploadHeader]);
    auto started = core.BeginUpload(request_header, *len);
    // The same attachment still uploading on a connection that was just cut: that session ends as soon as
    // its read fails. Wait a little for it rather than make the phone send this body for nothing.
    for (int i = 0; i < 40; ++i) {
      auto* r = std::get_if<HttpResult>(&started);
      if (r == nullptr || r->status != 409) break;
      asio::steady_timer wait(co_await asio::this_coro::executor, std::chrono::milliseconds(25));
      co_await wait.async_wait(kTuple);
      started = core.BeginUpload(request_header, *len);
    }
    if (auto* r = std::get_if<HttpResult>(&started)) {
      *body_done = *len == 0;
      co_return std::move(*r);
    }
    auto session = std::move(std::get<std::unique_ptr<UploadSession>>(started));
    // Its end (the answer, or a cut connection) makes what arrived durable: an fdatasync, or requests to an
    // S3 store that may retry for a while. That runs on the storage pool, never on this I/O thread.
    auto end_on_pool = [this](std::unique_ptr<UploadSession> s) {
      asio::post(storage_pool, [s = std::shared_ptr<UploadSession>(std::move(s))]() mutable { s.reset(); });
    };
    // The body is read straight into a chunk buffer in large reads (not through the HTTP parser, a small
    // read at a time): bytes that came with the header first, then the socket. Two buffers: while the
    // storage pool checks and writes chunk k (hash, pwrite, fdatasync), this thread reads chunk k+1.
    using namespace asio::experimental::awaitable_operators;
    uint64_t remaining = *len, pos = 0;
    std::vector<uint8_t> bufs[2] = {std::vector<uint8_t>(session->max_chunk()), std::vector<uint8_t>(session->max_chunk())};
    auto read_chunk = [&](std::vector<uint8_t>& into, size_t want) -> asio::awaitable<bool> {
      size_t filled = asio::buffer_copy(asio::buffer(into.data(), want), buffer.data());
      buffer.consume(filled);
      if (filled < want && !co_await ReadExactly(stream, tcp_layer, into.data() + filled, want - filled)) co_return false;
      remaining -= want;
      *bytes_in += want;
      co_return true;
    };
    UploadSession* s = session.get();
    auto feed = [this, s](const uint8_t* p, size_t n) {
      return asio::co_spawn(storage_pool, [s, p, n]() -> asio::awaitable<bool> { co_return s->Feed({p, n}); },
                            asio::use_awaitable);
    };
    size_t want = session->want_at(pos);
    if (want > remaining) want = 0;  // cannot happen for a request BeginUpload accepted
    if (want > 0 && !co_await read_chunk(bufs[0], want)) {
      *dropped = true;
      end_on_pool(std::move(session));
      co_return HttpResult{};
    }
    for (int cur = 0; want > 0;) {
      size_t next = session->want_at(pos + want);
      bool more = next > 0 && remaining >= next;
      bool fed = false, got = true;
      if (more) {
        std::tie(fed, got) = co_await (feed(bufs[cur].data(), want) && read_chunk(bufs[1 - cur], next));
      } else {
        fed = co_await feed(bufs[cur].data(), want);
      }
      if (!got) {
        *dropped = true;  // cut mid-body: what was made durable stays
        end_on_pool(std::move(session));
        co_return HttpResult{};
      }
      if (!fed || !more) break;
      pos += want;
      want = next;
      cur = 1 - cur;
    }
    *body_done = remaining == 0;
    // A named coroutine with the session as its parameter, not a capturing lambda inside the co_await: built
    // with GCC 12, that lambda's shared_ptr capture was released twice (ASan: heap-use-after-free).
    auto answer = AnswerAndEnd(std::shared_ptr<UploadSession>(std::move(session)));
    co_return co_await asio::co_spawn(storage_pool, std::move(answer), asio::use_awaitable);
  }

  // Runs on the storage pool: the session's answer, then its end (the session is released there too).
  static asio::awaitable<HttpResult> AnswerAndEnd(std::shared_ptr<UploadSession> s) {
    HttpResult r = s->Answer();
    s.reset();
    co_return r;
  }

  template <typename Stream>
  asio::awaitable<void> Serve(Stream& stream, beast::tcp_stream& tcp_layer, const std::string& peer, Conn& conn) {
    beast::flat_buffer buffer;
    auto idle_since = std::chrono::steady_clock::now();  // accepted, or the last answer went out
    for (;;) {
      conn.waiting_since = std::chrono::steady_clock::now().time_since_epoch().count();
      conn.busy = false;
      if (stopping) co_return;
      const auto live_opt = Live();  // each request under the settings of its time (a reload may change them)
      const HttpOptions& opt = *live_opt;
      http::request_parser<http::empty_body> head;
      head.header_limit(static_cast<std::uint32_t>(opt.max_header_bytes));
      head.body_limit(std::numeric_limits<std::uint64_t>::max());  // uploads stream; others are checked below
      tcp_layer.expires_after(std::chrono::seconds(opt.header_timeout_s));
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, head, kTuple);
      if (hec) {
        if (hec == beast::error::timeout && buffer.size() > 0) core.metrics().Refused(Refusal::kTimeout);  // not idle
        if (hec != http::error::end_of_stream && hec != beast::error::timeout && hec != asio::error::eof &&
            hec != asio::error::operation_aborted)
          LogLine("info", "\"event\":\"bad_header\"" + Peer(peer) + ",\"error\":" + Q(hec.message()));  // no header to read
        co_return;
      }
      conn.busy = true;
      auto start = std::chrono::steady_clock::now();
      double queued_ms = std::chrono::duration<double, std::milli>(start - idle_since).count();
      tcp_layer.expires_after(std::chrono::seconds(opt.body_timeout_s));
      HttpResult result;
      bool keep_alive = false, linger = false;
      std::string method(head.get().method_string()), target(head.get().target());
      std::string client;
      if (opt.log_client_addresses) {
        // Every X-Forwarded-For line, in order (a proxy may append its own line rather than extend one).
        std::string forwarded;
        auto range = head.get().equal_range("X-Forwarded-For");
        for (auto it = range.first; it != range.second; ++it)
          forwarded += (forwarded.empty() ? "" : ",") + std::string(it->value());
        client = ClientAddress(peer, forwarded, opt.trusted_proxies);
      }
      size_t bn = 0;
      // HTTP/1.0 connections persist only when the request asked with "Connection: keep-alive", and then
      // only if the answer says "Connection: keep-alive" too (RFC 9112 section 9.3; Beast's keep_alive()
      // reads the request's side of it).
      const bool http10 = head.get().version() < 11;
      // One line per request, written once it is over (answered, or cut before it could be): the operator
      // counts requests by counting lines. Warnings (the body budget spent) are logged also with --quiet.
      auto log_request = [&](int status, const char* level, const std::string& extra) {
        if (!opt.log_requests && std::string_view(level) == "info") return;
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        char t[64];
        std::snprintf(t, sizeof t, "%.2f,\"queued_ms\":%.2f", ms, queued_ms);
        LogLine(level, "\"event\":\"request\"" + Peer(client) + ",\"method\":" + Q(method) +
                           ",\"path\":" + Q(target.substr(0, 64)) + ",\"status\":" + std::to_string(status) +
                           ",\"ms\":" + t + ",\"bytes_in\":" + std::to_string(bn) + extra);
      };
      // Status 0: the connection ended or timed out mid-body, so there was nothing to answer.
      const std::string kDropped = ",\"dropped\":true";
      const char* level = "info";
      std::string note;
      if (target == protocol::kPathUpload && head.get().method() == http::verb::post && !opt.metrics_only) {
        // Streamed: one chunk in memory at a time, each verified and made durable before the next.
        bool body_done = false, dropped = false;
        keep_alive = head.get().keep_alive() && !stopping;
        result = co_await Upload(stream, tcp_layer, buffer, std::move(head), &body_done, &dropped, &bn);
        if (dropped) {  // cut mid-body: what arrived whole is kept; nothing to answer
          log_request(0, "info", kDropped);
          co_return;
        }
        if (!body_done) keep_alive = false, linger = true;  // answered early (e.g. a bad chunk)
      } else {
        // A declared Content-Length over the limit is refused right after the header; so is a body without
        // one (Dala clients always send it) and one that does not fit the shared body budget now.
        const auto declared = head.content_length();
        bool too_large = declared && *declared > opt.max_body_bytes;
        const size_t reserve = declared && !too_large && *declared > kFreeBodyBytes ? *declared - kFreeBodyBytes : 0;
        bool over_budget = false;
        if (reserve > 0 && buffered.fetch_add(reserve) + reserve > opt.max_buffered_bytes) {
          buffered -= reserve;
          over_budget = true;
        }
        struct Release {
          std::atomic<size_t>& n;
          size_t r;
          ~Release() { n -= r; }
        } release{buffered, over_budget ? 0 : reserve};
        http::request_parser<http::string_body> parser(std::move(head));
        parser.body_limit(opt.max_body_bytes);
        boost::system::error_code bec;
        const bool chunked = !declared && !parser.is_done();
        if (!too_large && !over_budget && !chunked)
          std::tie(bec, bn) = co_await http::async_read(stream, buffer, parser, kTuple);
        if (bec == http::error::body_limit) too_large = true;
        if (chunked) {
          result = {411, "text/plain", "a request body needs a Content-Length\n"};
          linger = true;
        } else if (over_budget) {
          core.metrics().Refused(Refusal::kBodyBudget);
          level = "warn";
          note = ",\"refused\":\"body_budget\",\"declared_bytes\":" + std::to_string(*declared);
          result = {503, "text/plain", "the server is busy; try again later\n"};
          linger = true;
        } else if (too_large) {
          core.metrics().Refused(Refusal::kBodyTooLarge);
          result = {413, "text/plain", "request body too large\n"};
          linger = true;
        } else if (bec) {
          if (bec == beast::error::timeout) core.metrics().Refused(Refusal::kTimeout);
          log_request(0, "info", kDropped);
          co_return;  // timed out or dropped mid-body: nothing was processed
        } else {
          auto& req = parser.get();
          keep_alive = req.keep_alive() && !stopping;
          result = co_await Route(peer, req);
        }
      }
      http::response<http::string_body> res{static_cast<http::status>(result.status), 11};
      // No Server header (nor any other product name) in answers: issue 14, item 7.
      if (!result.content_type.empty()) res.set(http::field::content_type, result.content_type);
      res.body() = std::move(result.body);
      res.keep_alive(keep_alive);  // 1.1: "Connection: close" unless it persists
      if (keep_alive && http10) res.set(http::field::connection, "keep-alive");
      res.prepare_payload();
      // Counted before it is sent: a client that has its answer finds it counted in its next scrape.
      core.metrics().Request(target, result.status, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      tcp_layer.expires_after(std::chrono::seconds(opt.body_timeout_s));
      auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
      ++served;
      log_request(result.status, level, note);
      idle_since = std::chrono::steady_clock::now();
      if (wec) co_return;
      if (linger) {
        // Lingering close: the client may still be sending the body we refused. Stop sending and drain
        // what it sends for a while, so it reads our answer instead of a connection reset.
        boost::system::error_code ignored;
        tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
        tcp_layer.expires_after(std::chrono::seconds(2));
        char sink[16384];
        for (size_t drained = 0; drained < (64u << 20);) {
          auto [dec, dn] = co_await tcp_layer.async_read_some(asio::buffer(sink), kTuple);
          if (dec) break;
          drained += dn;
        }
        co_return;
      }
      if (!keep_alive) co_return;
    }
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    struct Count {
      std::atomic<size_t>& n;
      metrics::Gauge& open;
      ~Count() {
        --n;
        open.Add(-1);
      }
    } count{connections, core.metrics().connections_open};
    std::string peer;
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    if (!ec) peer = ep.address().to_string();
    auto conn = std::make_shared<Conn>();
    conn->ex = socket.get_executor();
    struct Dead {
      Conn& c;
      ~Dead() { c.alive = false; }
    } dead{*conn};
    // The TLS context as it is now: a reload (a renewed certificate) serves new connections, this one
    // keeps the context it started with.
    if (const auto context = Tls()) {
      beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *context);
      Register(conn, &beast::get_lowest_layer(stream));
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(Live()->header_timeout_s));
      auto [hs] = co_await stream.async_handshake(ssl::stream_base::server, kTuple);
      if (hs) co_return;
      co_await Serve(stream, beast::get_lowest_layer(stream), peer, *conn);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(kTuple);
    } else {
      beast::tcp_stream stream(std::move(socket));
      Register(conn, &stream);
      co_await Serve(stream, stream, peer, *conn);
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  void Register(const std::shared_ptr<Conn>& conn, beast::tcp_stream* tcp) {
    conn->tcp = tcp;
    conn->waiting_since = std::chrono::steady_clock::now().time_since_epoch().count();
    std::lock_guard lock(conns_mu);
    std::erase_if(conns, [](const std::weak_ptr<Conn>& w) { return w.expired(); });
    conns.push_back(conn);
  }

  // Closes connections that wait for a next request; busy ones finish theirs (keep-alive is off now).
  void CloseIdle() {
    std::lock_guard lock(conns_mu);
    for (auto& w : conns) {
      if (auto c = w.lock()) {
        asio::post(c->ex, [c] {
          if (c->alive && !c->busy && c->tcp != nullptr) c->tcp->cancel();
        });
      }
    }
  }

  // At the connection limit the connection that has waited longest for a request (idle, or trickling a
  // header in) is closed to make room: idle and slow peers cannot lock phones out, and a connection in
  // the middle of a request is never the one closed; the newest connections, which have only just had
  // the chance to send theirs, are the last to go. Only when every connection is in a request is the new
  // one refused. The count passes the limit by the connections being closed at that moment; Accept()
  // bounds that by waiting for them to close.
  bool EvictOldestWaiting() {
    std::shared_ptr<Conn> oldest;
    {
      std::lock_guard lock(conns_mu);
      for (auto& w : conns) {
        auto c = w.lock();
        if (!c || !c->alive || c->busy || c->evicted || c->tcp == nullptr) continue;
        if (!oldest || c->waiting_since < oldest->waiting_since) oldest = c;
      }
    }
    if (!oldest) return false;
    oldest->evicted = true;  // not chosen twice
    core.metrics().Refused(Refusal::kEvicted);
    asio::post(oldest->ex, [oldest] {
      if (oldest->alive && !oldest->busy && oldest->tcp != nullptr) oldest->tcp->cancel();
    });
    return true;
  }

  void Admit(tcp::socket socket) {
    const auto live_opt = Live();
    const HttpOptions& opt = *live_opt;
    if (connections >= opt.max_connections && !EvictOldestWaiting()) {
      core.metrics().Refused(Refusal::kConnectionLimit);
      LogLine("warn", "\"event\":\"connection_limit\",\"limit\":" + std::to_string(opt.max_connections));
      boost::system::error_code ignored;
      socket.close(ignored);
      return;
    }
    boost::system::error_code nd;
    socket.set_option(tcp::no_delay(true), nd);
    ++connections;
    core.metrics().connections_accepted.Inc();
    core.metrics().connections_open.Add(1);
    auto ex = socket.get_executor();
    asio::co_spawn(ex, Session(std::move(socket)), asio::detached);
  }

  // Evicted connections close on their own strands, a moment after Admit() chose them. While more than
  // kClosingHeadroom are still closing, new connections wait in the kernel's accept queue rather than
  // being refused: a burst of connections (a flood, or phones back online together) is taken in order
  // as room is made, and a phone in it is not turned away for arriving at the wrong moment.
  static constexpr size_t kClosingHeadroom = 64;
  asio::awaitable<void> WaitForRoom() {
    for (int i = 0; i < 500 && !stopping && connections >= Live()->max_connections + kClosingHeadroom; ++i) {
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(2));
      co_await pause.async_wait(kTuple);
    }
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      co_await WaitForRoom();
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), kTuple);
      if (stopping) co_return;
      if (ec) {
        // E.g. out of file descriptors under a flood: pause instead of spinning, keep serving the rest.
        core.metrics().Refused(Refusal::kAcceptFailed);
        LogLine("warn", "\"event\":\"accept_failed\",\"error\":" + Q(ec.message()));
        asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await pause.async_wait(kTuple);
        continue;
      }
      Admit(std::move(socket));
      // Drain the backlog now: one accept per trip through a run queue full of busy handlers would leave
      // a burst of phones (all back online at once) waiting in the kernel's accept queue for hundreds of ms.
      const size_t room = Live()->max_connections + kClosingHeadroom;
      for (int i = 0; i < 4096 && !stopping && connections < room; ++i) {
        tcp::socket next(asio::make_strand(ioc));
        boost::system::error_code aec;
        acceptor.accept(next, aec);  // the acceptor is non-blocking: would_block ends the drain
        if (aec) break;
        Admit(std::move(next));
      }
    }
  }
};

HttpServer::HttpServer(ServerCore& core, HttpOptions options) : impl_(new Impl(core, std::move(options))) {}
HttpServer::~HttpServer() = default;

namespace {

// A server TLS context from the certificate chain and key files, or nullptr when neither is given.
Result<std::shared_ptr<ssl::context>> MakeTls(const HttpOptions& o) {
  if (o.tls_cert.empty() && o.tls_key.empty()) return std::shared_ptr<ssl::context>();
  if (o.tls_cert.empty() || o.tls_key.empty()) return Status(Code::kInvalidArgument, "give both --tls-cert and --tls-key");
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  tls->use_certificate_chain_file(o.tls_cert, ec);
  if (ec) return Status(Code::kInvalidArgument, "cannot load the TLS certificate: " + ec.message());
  tls->use_private_key_file(o.tls_key, ssl::context::pem, ec);
  if (ec) return Status(Code::kInvalidArgument, "cannot load the TLS key: " + ec.message());
  if (SSL_CTX_check_private_key(tls->native_handle()) != 1)
    return Status(Code::kInvalidArgument, "the TLS key is not the certificate's key");
  return tls;
}

}  // namespace

Status HttpServer::Listen() {
  const auto& o = impl_->fixed;
  boost::system::error_code ec;
  DALA_ASSIGN_OR_RETURN(impl_->tls, MakeTls(o));
  auto addr = asio::ip::make_address(o.host, ec);
  if (ec) return {Code::kInvalidArgument, "'" + o.host + "' is not an IP address to listen on"};
  tcp::endpoint ep(addr, o.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) acc.non_blocking(true, ec);
  if (ec) return {Code::kIo, "cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " + ec.message()};
  impl_->bound_port = acc.local_endpoint().port();
  return Status::Ok();
}

uint16_t HttpServer::port() const { return impl_->bound_port; }

void HttpServer::Run() {
  auto& im = *impl_;
  // One accept loop per thread: a burst of connections (phones coming back online together) is taken in parallel.
  for (int i = 0; i < std::max(1, im.fixed.threads); ++i) asio::co_spawn(im.ioc, im.Accept(), asio::detached);
  LogLine("info", "\"event\":\"listening\",\"port\":" + std::to_string(im.bound_port) + ",\"tls\":" +
                  (im.Tls() ? "true" : "false"));
  std::vector<std::thread> pool;
  for (int i = 1; i < std::max(1, im.fixed.threads); ++i) pool.emplace_back([&] { im.ioc.run(); });
  im.ioc.run();
  for (auto& t : pool) t.join();
  LogLine("info", "\"event\":\"stopped\",\"requests\":" + std::to_string(im.served.load()));
}

Status HttpServer::Reload(const HttpOptions& next) {
  auto& im = *impl_;
  if (next.tls_cert.empty() != im.fixed.tls_cert.empty())
    return Status(Code::kInvalidArgument, "switching HTTPS on or off takes a restart");
  DALA_ASSIGN_OR_RETURN(std::shared_ptr<ssl::context> tls, MakeTls(next));
  auto live = std::make_shared<HttpOptions>(im.fixed);
  live->tls_cert = next.tls_cert;
  live->tls_key = next.tls_key;
  live->header_timeout_s = next.header_timeout_s;
  live->body_timeout_s = next.body_timeout_s;
  live->max_connections = next.max_connections;
  live->log_requests = next.log_requests;
  live->log_client_addresses = next.log_client_addresses;
  live->trusted_proxies = next.trusted_proxies;
  std::lock_guard lock(im.live_mu);
  im.live = std::move(live);
  im.tls = std::move(tls);
  return Status::Ok();
}

bool HttpServer::Responsive(std::chrono::milliseconds within) {
  auto answered = std::make_shared<std::promise<void>>();
  auto done = answered->get_future();
  asio::post(impl_->ioc, [answered] { answered->set_value(); });
  return done.wait_for(within) == std::future_status::ready;
}

void HttpServer::Stop() {
  auto& im = *impl_;
  if (im.stopping.exchange(true)) return;
  // Stop accepting; connections finish the request they are in (keep-alive is switched off) and close.
  asio::post(im.ioc, [&im] {
    boost::system::error_code ec;
    im.acceptor.close(ec);
    im.CloseIdle();
    auto timer = std::make_shared<asio::steady_timer>(im.ioc);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(im.fixed.shutdown_grace_s);
    auto poll = std::make_shared<std::function<void()>>();
    std::weak_ptr<std::function<void()>> weak = poll;  // the pending wait owns the function, not itself
    *poll = [&im, timer, deadline, weak]() {
      if (im.connections == 0 || std::chrono::steady_clock::now() >= deadline) {
        im.ioc.stop();
        return;
      }
      timer->expires_after(std::chrono::milliseconds(20));
      timer->async_wait([p = weak.lock()](const boost::system::error_code&) { (*p)(); });
    };
    (*poll)();
  });
}

}  // namespace dala::server
