// The sync engine and dala-server over real loopback sockets, in one process.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "../unit/test_util.h"
#include "client/background_sync.h"
#include "server/http_server.h"
#include "client/http_transport.h"
#include "server/server_core.h"
#include "../support/test_org.h"
#include "base/clock.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::TempDir;

struct LiveServer {
  std::unique_ptr<server::ServerCore> core;
  std::unique_ptr<server::HttpServer> http;
  std::thread thread;
  LiveServer(const std::string& data, uint16_t port) {
    core = std::move(server::ServerCore::Open(data)).value();
    server::HttpOptions o;
    o.port = port;
    o.log_requests = false;
    http = std::make_unique<server::HttpServer>(*core, o);
    Status st = http->Listen();
    EXPECT_TRUE(st.ok()) << st.message();
    thread = std::thread([this] { http->Run(); });
  }
  ~LiveServer() {
    http->Stop();
    thread.join();
  }
};

struct World {
  TempDir t;
  testing::TestOrg org{"T"};
  std::string data = t.sub("server");
  World() { EXPECT_TRUE(server::ServerCore::Init(data, org.root.public_key).ok()); }
  std::string Invite(uint16_t port, uint32_t uses) {
    auto core = std::move(server::ServerCore::Open(data)).value();
    return org.Invite(core->server_key(), uses, 3600000, {"http://127.0.0.1:" + std::to_string(port)});
  }
};

uint16_t FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

void SealMany(Store& s, int n) {
  std::vector<ReportId> ids;
  for (int i = 0; i < n; ++i) ids.push_back(s.CreateDraft("detention/1")->id());
  ASSERT_TRUE(s.SealMany(ids).ok());
}

// The server's log times (dala::IsoTime): ISO 8601 in UTC, milliseconds truncated (not rounded into the next
// second); 0 means "never" and prints as nothing.
TEST(Http, LogTimesAreIso8601UtcWithMilliseconds) {
  using namespace std::chrono;
  auto ms = [](sys_time<milliseconds> t) { return t.time_since_epoch().count(); };
  EXPECT_EQ(IsoTime(0), "");
  EXPECT_EQ(IsoTime(1), "1970-01-01T00:00:00.001Z");
  const auto day = sys_days{year{2026} / December / 5};
  EXPECT_EQ(IsoTime(ms(day + hours(15) + minutes(13) + seconds(27) + milliseconds(123))), "2026-12-05T15:13:27.123Z");
  EXPECT_EQ(IsoTime(ms(floor<milliseconds>(day + hours(23) + minutes(59) + seconds(59) + microseconds(999999)))),
            "2026-12-05T23:59:59.999Z");
  EXPECT_EQ(IsoTime(ms(sys_days{year{2028} / February / 29} + milliseconds(7))), "2028-02-29T00:00:00.007Z");
}

TEST(Http, FiftyPhonesTwoHundredReportsEachExactlyOnce) {
  World w;
  uint16_t port = FreePort();
  std::string invite = w.Invite(port, 50);
  LiveServer server(w.data, port);
  std::vector<std::unique_ptr<Store>> phones;
  for (int p = 0; p < 50; ++p) {
    std::string name = "p";
    name += std::to_string(p);
    phones.push_back(std::move(Store::Create(w.t.sub(name), Pass("pw"), FastOptions())).value());
    ASSERT_TRUE(phones.back()->Join(invite).ok());
    SealMany(*phones.back(), 200);
  }
  std::atomic<uint64_t> delivered{0}, remaining{0};
  std::vector<std::thread> threads;
  for (auto& phone : phones)
    threads.emplace_back([&, s = phone.get()] {
      sync::HttpTransport transport;
      auto r = sync::RunOnce(*s, transport, SystemNowMs() + 120000, nullptr);
      if (r.ok()) {
        delivered += r->delivered;
        remaining += r->remaining;
      } else {
        remaining += 1000000;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(delivered.load(), 10000u);
  EXPECT_EQ(remaining.load(), 0u);
  EXPECT_EQ(*server.core->ReportCount(), 10000u);
}

TEST(Http, BackgroundModeDeliversWhenTheNetworkReturns) {
  World w;
  uint16_t port = FreePort();
  std::string invite = w.Invite(port, 1);
  auto phone = std::move(Store::Create(w.t.sub("phone"), Pass("pw"), FastOptions())).value();
  ASSERT_TRUE(phone->Join(invite).ok());
  SealMany(*phone, 30);
  std::atomic<uint64_t> progress_calls{0};
  sync::BackgroundSync bg(*phone, std::make_unique<sync::HttpTransport>(),
                          [&](const sync::Progress&) { ++progress_calls; }, 10000);
  // The first run finds the server down.
  for (int i = 0; i < 200 && bg.runs() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(bg.runs(), 1u);
  EXPECT_TRUE(bg.LastResult()->unreachable);
  LiveServer server(w.data, port);
  bg.NotifyOnline();
  std::string dest = (*phone->Servers())[0].destination;
  for (int i = 0; i < 500 && phone->Stats(dest)->delivered < 30; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(phone->Stats(dest)->delivered, 30u);
  EXPECT_EQ(*server.core->ReportCount(), 30u);
  EXPECT_GT(progress_calls.load(), 0u);
}

TEST(Http, CancelStopsARunPromptly) {
  World w;
  // A "server" that accepts connections and never answers.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  std::string invite = w.Invite(ntohs(a.sin_port), 1);
  auto phone = std::move(Store::Create(w.t.sub("phone"), Pass("pw"), FastOptions())).value();
  ASSERT_TRUE(phone->Join(invite).ok());
  SealMany(*phone, 3);
  auto start = std::chrono::steady_clock::now();
  {
    sync::BackgroundSync bg(*phone, std::make_unique<sync::HttpTransport>(), nullptr, 60000);  // 60 s run limit
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the run is stuck waiting for an answer
    EXPECT_EQ(bg.runs(), 0u);
    bg.Cancel();
    for (int i = 0; i < 200 && bg.runs() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(bg.runs(), 1u);
    EXPECT_EQ(bg.LastResult()->remaining, 3u);  // nothing lost
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ::close(listener);
}

}  // namespace
}  // namespace dala
