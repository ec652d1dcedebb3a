#include <atomic>
#include <set>
#include <thread>

#include "test_util.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::TempDir;

struct Fixture {
  TempDir t;
  std::string dir = t.sub("s");
  std::unique_ptr<Store> s;
  crypto::BoxKeyPair org = crypto::GenerateBoxKeyPair();
  int64_t now = 1'700'000'000'000;

  explicit Fixture(StoreOptions o = FastOptions()) {
    s = std::move(Store::Create(dir, Pass("pw"), o)).value();
    UseClock();
    EXPECT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
  }
  void UseClock() { s->set_clock([this] { return now; }); }
  ReportId Seal(int32_t priority = 0, size_t narrative = 10) {
    auto r = s->CreateDraft("detention/1");
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r->SetNarrative(std::string(narrative, 'n')).ok());
    r->priority = priority;
    EXPECT_TRUE(s->Seal(*r).ok());
    return r->id();
  }
};

TEST(Outbox, PriorityThenAgeAndSizeBudget) {
  Fixture f;
  ReportId low = f.Seal(0), high = f.Seal(5), low2 = f.Seal(0);
  auto b = f.s->NextBatch("org", 10, 1 << 20);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 3u);
  EXPECT_EQ((*b)[0].id, high);
  EXPECT_EQ((*b)[1].id, low);
  EXPECT_EQ((*b)[2].id, low2);
  EXPECT_EQ((*b)[0].attempts, 1u);
  // Everything is in flight now: nothing more to hand out.
  EXPECT_TRUE(f.s->NextBatch("org", 10, 1 << 20)->empty());

  Fixture g;
  g.Seal(0, 3000);
  g.Seal(0, 3000);
  auto one = g.s->NextBatch("org", 10, 1000);  // the first item always fits, even over budget
  ASSERT_EQ(one->size(), 1u);
  auto next = g.s->NextBatch("org", 10, 1 << 20);
  EXPECT_EQ(next->size(), 1u);
  EXPECT_TRUE(g.s->NextBatch("other", 10, 1 << 20)->empty());
}

TEST(Outbox, InFlightIsPendingAgainAfterRestart) {
  Fixture f;
  f.Seal();
  f.Seal();
  ASSERT_EQ(f.s->NextBatch("org", 10, 1 << 20)->size(), 2u);
  EXPECT_EQ(f.s->Stats("org")->in_flight, 2u);
  f.s.reset();  // the process "dies" with items in flight
  f.s = std::move(Store::Open(f.dir, Pass("pw"), FastOptions())).value();
  f.UseClock();
  auto st = f.s->Stats("org");
  EXPECT_EQ(st->in_flight, 0u);
  EXPECT_EQ(st->pending, 2u);
  auto again = f.s->NextBatch("org", 10, 1 << 20);
  ASSERT_EQ(again->size(), 2u);
  EXPECT_EQ((*again)[0].attempts, 2u);
}

TEST(Outbox, RetryBacksOffExponentiallyWithJitter) {
  StoreOptions o = FastOptions();
  o.backoff_base_ms = 1000;
  o.backoff_max_ms = 8000;
  Fixture f(o);
  ReportId id = f.Seal();
  uint64_t expected_cap = 1000;
  for (int attempt = 1; attempt <= 6; ++attempt) {
    auto b = f.s->NextBatch("org", 1, 1 << 20);
    ASSERT_EQ(b->size(), 1u) << attempt;
    ASSERT_TRUE(f.s->MarkRetry("org", id, 1, "503 from server").ok());
    int64_t next = f.s->Stats("org")->next_attempt_ms;
    int64_t delay = next - f.now;
    EXPECT_GE(delay, static_cast<int64_t>(expected_cap / 2)) << attempt;
    EXPECT_LE(delay, static_cast<int64_t>(expected_cap)) << attempt;
    // Not due before its time.
    f.now = next - 1;
    EXPECT_TRUE(f.s->NextBatch("org", 1, 1 << 20)->empty());
    f.now = next;
    expected_cap = std::min<uint64_t>(expected_cap * 2, 8000);
  }
}

// "Send now": a report backing off after a server error is due at once on RetryNow, not on
// RetryOfflineNow (which is for reports that waited only for the network); delivered ones stay delivered.
TEST(Outbox, RetryNowIgnoresBackoffOfQueuedReportsOnly) {
  Fixture f;
  ReportId failed = f.Seal(), offline = f.Seal(), done = f.Seal();
  ASSERT_EQ(f.s->NextBatch("org", 3, 1 << 20)->size(), 3u);
  ASSERT_TRUE(f.s->MarkRetry("org", failed, 1, "HTTP 400").ok());
  ASSERT_TRUE(f.s->MarkRetry("org", offline, 1, kOfflineReason).ok());
  ASSERT_TRUE(f.s->MarkDelivered("org", done, 1, crypto::Bytes("receipt")).ok());
  EXPECT_TRUE(f.s->NextBatch("org", 3, 1 << 20)->empty());
  ASSERT_TRUE(f.s->RetryOfflineNow().ok());
  auto b = f.s->NextBatch("org", 3, 1 << 20);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].id, offline);
  ASSERT_TRUE(f.s->MarkRetry("org", offline, 1, kOfflineReason).ok());
  ASSERT_TRUE(f.s->RetryNow().ok());
  b = f.s->NextBatch("org", 3, 1 << 20);
  ASSERT_EQ(b->size(), 2u);
  std::set<ReportId> due{(*b)[0].id, (*b)[1].id};
  EXPECT_EQ(due, (std::set<ReportId>{failed, offline}));
  EXPECT_EQ(f.s->Stats("org")->delivered, 1u);
}

TEST(Outbox, JitterSpreadsRetries) {
  StoreOptions o = FastOptions();
  o.backoff_base_ms = 60000;
  Fixture f(o);
  constexpr int kItems = 20;
  for (int i = 0; i < kItems; ++i) {
    ReportId id = f.Seal();
    ASSERT_EQ(f.s->NextBatch("org", 1, 1 << 20)->size(), 1u);
    ASSERT_TRUE(f.s->MarkRetry("org", id, 1, "").ok());
  }
  // Delays are drawn from [30 s, 60 s]. Half-way through, some are due and some are not; without
  // jitter all would be due together (0 or 20). A false failure needs 20 draws on one side: p = 2^-19.
  f.now += 45000;
  size_t due = f.s->NextBatch("org", 100, 1 << 20)->size();
  EXPECT_GT(due, 0u);
  EXPECT_LT(due, static_cast<size_t>(kItems));
  f.now += 15001;
  EXPECT_EQ(due + f.s->NextBatch("org", 100, 1 << 20)->size(), static_cast<size_t>(kItems));
}

TEST(Outbox, DeliveredKeepsReceiptAndIsIdempotent) {
  Fixture f;
  ReportId id = f.Seal();
  ASSERT_EQ(f.s->NextBatch("org", 1, 1 << 20)->size(), 1u);
  std::vector<uint8_t> receipt = {1, 2, 3, 4};
  ASSERT_TRUE(f.s->MarkDelivered("org", id, 1, receipt).ok());
  ASSERT_TRUE(f.s->MarkDelivered("org", id, 1, std::vector<uint8_t>{9}).ok());  // a duplicate answer
  EXPECT_EQ(*f.s->Receipt("org", id, 1), receipt);
  EXPECT_EQ(f.s->Get(id)->state, ReportState::kDelivered);
  EXPECT_EQ(f.s->Stats("org")->delivered, 1u);
  EXPECT_EQ(f.s->Receipt("org", ReportId{}, 1).status().code(), Code::kNotFound);
  EXPECT_EQ(f.s->MarkDelivered("org", ReportId{}, 1, receipt).code(), Code::kNotFound);
  EXPECT_EQ(f.s->MarkRetry("org", id, 1, "").code(), Code::kNotFound);  // delivered is final
}

TEST(Outbox, RejectedKeepsReasonAndIsNotRetried) {
  Fixture f;
  ReportId id = f.Seal();
  ASSERT_EQ(f.s->NextBatch("org", 1, 1 << 20)->size(), 1u);
  ASSERT_TRUE(f.s->MarkRejected("org", id, 1, "device revoked").ok());
  EXPECT_EQ(f.s->Get(id)->state, ReportState::kRejected);
  f.now += 100'000'000;
  EXPECT_TRUE(f.s->NextBatch("org", 10, 1 << 20)->empty());
  EXPECT_EQ(f.s->Stats("org")->rejected, 1u);
}

TEST(Outbox, DeleteAfterDeliveryPurgesContentOnly) {
  StoreOptions o = FastOptions();
  o.delete_after_delivery = true;
  Fixture f(o);
  ReportId id = f.Seal(0, 50);
  ASSERT_EQ(f.s->NextBatch("org", 1, 1 << 20)->size(), 1u);
  ASSERT_TRUE(f.s->MarkDelivered("org", id, 1, std::vector<uint8_t>{7}).ok());
  auto r = f.s->Get(id);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->purged);
  EXPECT_EQ(r->state, ReportState::kDelivered);
  EXPECT_TRUE(r->content.narrative().empty());
  EXPECT_EQ(r->form(), "detention/1");
  EXPECT_EQ(*f.s->Receipt("org", id, 1), std::vector<uint8_t>{7});
  EXPECT_EQ(f.s->Edit(id).status().code(), Code::kState);
}

TEST(Outbox, DeleteAfterDeliveryWaitsForEveryDestination) {
  Fixture f;
  ASSERT_TRUE(f.s->SetRecipients("org2", {f.org.public_key}).ok());
  ASSERT_TRUE(f.s->SetDeleteAfterDelivery(true).ok());
  ReportId id = f.Seal();
  ASSERT_EQ(f.s->NextBatch("org", 1, 1 << 20)->size(), 1u);
  ASSERT_TRUE(f.s->MarkDelivered("org", id, 1, std::vector<uint8_t>{1}).ok());
  EXPECT_FALSE(f.s->Get(id)->purged);
  EXPECT_EQ(f.s->Get(id)->state, ReportState::kQueued);
  ASSERT_EQ(f.s->NextBatch("org2", 1, 1 << 20)->size(), 1u);
  ASSERT_TRUE(f.s->MarkDelivered("org2", id, 1, std::vector<uint8_t>{2}).ok());
  EXPECT_TRUE(f.s->Get(id)->purged);
}

// One answer's outcomes are recorded together, in one transaction: all of them, or (an item that is not
// queued) none. Many deliveries at once (more than one statement's worth of rows) keep each its own receipt
// and purge each when the store deletes after delivery; a version answered twice keeps its first receipt.
TEST(Outbox, OneAnswersOutcomesAreRecordedTogetherOrNotAtAll) {
  StoreOptions o = FastOptions();
  o.delete_after_delivery = true;
  Fixture f(o);
  std::vector<ReportId> ids;
  for (int i = 0; i < 600; ++i) ids.push_back(f.Seal(0, 20));
  auto batch = f.s->NextBatch("org", 1000, 1 << 30);
  ASSERT_EQ(batch->size(), 600u);
  auto delivered = [&](size_t i, uint8_t mark) {
    return OutboxOutcome{OutboxOutcome::Kind::kDelivered, ids[i], 1, {mark, static_cast<uint8_t>(i), static_cast<uint8_t>(i >> 8)}, ""};
  };
  std::vector<OutboxOutcome> outcomes;
  for (size_t i = 0; i < 598; ++i) outcomes.push_back(delivered(i, 1));
  outcomes.push_back({OutboxOutcome::Kind::kRetry, ids[598], 1, {}, "try later"});
  outcomes.push_back({OutboxOutcome::Kind::kRejected, ids[599], 1, {}, "refused"});
  outcomes.push_back(delivered(5, 2));  // the same version again: the first receipt counts
  // With one item that is not queued, nothing at all is recorded.
  std::vector<OutboxOutcome> bad = outcomes;
  bad.insert(bad.begin() + 300, {OutboxOutcome::Kind::kDelivered, ReportId{}, 1, {1}, ""});
  EXPECT_EQ(f.s->RecordOutcomes("org", bad).code(), Code::kNotFound);
  EXPECT_EQ(f.s->Stats("org")->in_flight, 600u);
  EXPECT_FALSE(f.s->Get(ids[0])->purged);
  ASSERT_TRUE(f.s->RecordOutcomes("org", outcomes).ok());
  auto st = f.s->Stats("org");
  EXPECT_EQ(st->delivered, 598u);
  EXPECT_EQ(st->pending, 1u);
  EXPECT_EQ(st->rejected, 1u);
  EXPECT_EQ(st->in_flight, 0u);
  for (size_t i : {size_t{0}, size_t{5}, size_t{255}, size_t{256}, size_t{597}}) {
    EXPECT_EQ(*f.s->Receipt("org", ids[i], 1), delivered(i, 1).receipt) << i;
    EXPECT_TRUE(f.s->Get(ids[i])->purged) << i;
  }
  EXPECT_FALSE(f.s->Get(ids[598])->purged);
  EXPECT_EQ(f.s->Get(ids[599])->state, ReportState::kRejected);
}

// Items handed out but never sent go back as they were: pending, due, their attempt not counted.
TEST(Outbox, UnclaimedItemsAreQueuedAsBefore) {
  Fixture f;
  ReportId a = f.Seal(), b = f.Seal();
  auto batch = f.s->NextBatch("org", 10, 1 << 20);
  ASSERT_EQ(batch->size(), 2u);
  ASSERT_TRUE(f.s->Unclaim("org", *batch).ok());
  EXPECT_EQ(f.s->Stats("org")->pending, 2u);
  auto again = f.s->NextBatch("org", 10, 1 << 20);
  ASSERT_EQ(again->size(), 2u);
  EXPECT_EQ((*again)[0].id, a);
  EXPECT_EQ((*again)[1].id, b);
  EXPECT_EQ((*again)[0].attempts, 1u);
}

TEST(Outbox, ConcurrentUseFromManyThreads) {
  Fixture f;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto r = f.s->CreateDraft("detention/1");
        if (!r.ok() || !f.s->Seal(*r).ok()) ++failures;
        auto b = f.s->NextBatch("org", 2, 1 << 20);
        if (!b.ok()) { ++failures; continue; }
        for (const auto& item : *b)
          if (!f.s->MarkDelivered("org", item.id, item.version, std::vector<uint8_t>{1}).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto b = f.s->NextBatch("org", 1000, 1 << 30);
  for (const auto& item : *b) ASSERT_TRUE(f.s->MarkDelivered("org", item.id, item.version, std::vector<uint8_t>{1}).ok());
  EXPECT_EQ(f.s->Stats("org")->delivered, 80u);
  EXPECT_EQ(f.s->List()->size(), 80u);
}

}  // namespace
}  // namespace dala
