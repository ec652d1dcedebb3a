#include "server/tsa_client.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <optional>

namespace dala::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Url {
  std::string host, port = "80", target = "/";
};

Result<Url> Parse(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0)
    return Status(Code::kInvalidArgument, "a TSA URL must start with http:// (RFC 3161 answers are signed)");
  Url out;
  std::string rest = url.substr(kScheme.size());
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    out.target = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  if (rest.empty() || rest.find_first_of("@?# ") != std::string::npos)
    return Status(Code::kInvalidArgument, "the TSA URL has no usable host");
  if (rest.front() == '[') {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string::npos) return Status(Code::kInvalidArgument, "the TSA URL's IPv6 address is not closed");
    out.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return Status(Code::kInvalidArgument, "the TSA URL's port is malformed");
    if (!rest.empty()) out.port = rest.substr(1);
  } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    out.host = rest.substr(0, colon);
    out.port = rest.substr(colon + 1);
  } else {
    out.host = rest;
  }
  if (out.host.empty() || out.port.empty() || out.port.size() > 5 ||
      out.port.find_first_not_of("0123456789") != std::string::npos || std::stoi(out.port) == 0 ||
      std::stoi(out.port) > 65535)
    return Status(Code::kInvalidArgument, "the TSA URL's host or port is malformed");
  return out;
}

}  // namespace

Status CheckTsaUrl(const std::string& url) { return Parse(url).status(); }

Result<std::string> PostTimeStampQuery(const std::string& url, const std::string& query, int timeout_ms) {
  DALA_ASSIGN_OR_RETURN(Url u, Parse(url));
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::string_body> req{http::verb::post, u.target, 11};
  req.set(http::field::host, u.host);
  req.set(http::field::content_type, "application/timestamp-query");
  req.body() = query;
  req.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  std::optional<std::string> failed;
  asio::ip::tcp::resolver resolver(ioc);
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  resolver.async_resolve(u.host, u.port, [&](beast::error_code ec, asio::ip::tcp::resolver::results_type hosts) {
    if (ec) return void(failed = "cannot resolve the TSA's host: " + ec.message());
    stream.async_connect(hosts, [&](beast::error_code ec, const asio::ip::tcp::endpoint&) {
      if (ec) return void(failed = "cannot reach the TSA: " + ec.message());
      http::async_write(stream, req, [&](beast::error_code ec, size_t) {
        if (ec) return void(failed = "the TSA did not take the request: " + ec.message());
        http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) {
          if (ec) failed = "no answer from the TSA: " + ec.message();
        });
      });
    });
  });
  ioc.run_for(std::chrono::milliseconds(timeout_ms) + std::chrono::seconds(1));
  if (!ioc.stopped()) {  // the resolver ignores the stream's deadline
    ioc.stop();
    return Status(Code::kIo, "the TSA did not answer in time");
  }
  if (failed) return Status(Code::kIo, *failed);
  if (!parser.is_done()) return Status(Code::kIo, "the TSA's answer is incomplete");
  auto res = parser.release();
  if (res.result() != http::status::ok)
    return Status(Code::kIo, "the TSA answered HTTP " + std::to_string(res.result_int()));
  return std::move(res.body());
}

}  // namespace dala::server
