// Reading the desk store: the report list with search, filters, sorting and pages; one report with its
// versions, attachments, notes and case status; the selection an export writes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/db.h"
#include "base/status.h"
#include "dala/v1/report.pb.h"

namespace dala::desk {

inline constexpr const char* kCaseStatuses[] = {"new", "in review", "verified", "escalated", "closed"};
bool IsCaseStatus(std::string_view s);

struct ListQuery {
  std::string text;       // full-text search (words, all of them)
  std::string form;       // exact "name/version"
  std::string place;      // the "place" field contains this (case-insensitive for ASCII)
  std::string device;     // hex prefix of the device key
  std::string status;     // a case status
  std::string tag;        // one tag
  int verified = -1;      // 1 verified, 0 failed, -1 either
  int64_t from_ms = 0, to_ms = 0;  // received in [from, to); 0: open
  std::string sort = "received";   // received, sealed, created, form, place, status
  bool descending = true;
  uint32_t page = 0, per_page = 50;  // per_page at most 500; 0 = no limit (exports)
  std::vector<int64_t> rids;        // only these reports (empty: any)
};

struct ListRow {
  int64_t rid = 0;
  std::string device, report_id;  // hex
  uint32_t version = 0;
  std::string form, place, status, tags, excerpt;
  int64_t created_ms = 0, sealed_ms = 0, received_ms = 0;
  bool verified = false;
  std::optional<double> latitude, longitude;
};

struct ListPage {
  uint64_t total = 0;  // rows matching, over every page
  std::vector<ListRow> rows;
};

Result<ListPage> ListReports(db::Db& db, const ListQuery& q);

struct VersionRow {
  int64_t id = 0;
  uint32_t version = 0;
  bool verified = false;
  std::string problems_json, detail_json;  // what desk open would write for it
  v1::ReportContent content;
  int64_t received_ms = 0;
  uint64_t sequence = 0;
  int64_t leaf_index = -1;
  std::string server_key;  // hex
  std::vector<uint8_t> envelope, receipt;
};

struct AttachmentRow {
  std::string id;  // hex
  std::string mime, file;
  uint64_t size = 0;
  bool verified = false;
  std::vector<uint8_t> key, plaintext_hash;
};

struct NoteRow {
  int64_t time_ms = 0;
  std::string text;
};

struct ReportDetail {
  ListRow row;
  std::vector<VersionRow> versions;  // oldest first
  std::vector<AttachmentRow> attachments;  // of the latest version
  std::vector<NoteRow> notes;
};

// kNotFound when there is no such report.
Result<ReportDetail> LoadReport(db::Db& db, int64_t rid);
// One attachment of a report's latest version, by its id (hex).
Result<AttachmentRow> LoadAttachment(db::Db& db, int64_t rid, const std::string& attachment_hex);
struct DeviceRow {
  std::string device;  // hex
  int64_t enrolled_ms = 0;       // 0: no enrolment held
  std::string server_key;        // hex: the server it enrolled at
  std::string invite_key;        // hex: the invite's enrolment key (names the invite)
  int64_t invite_issued_ms = 0, invite_expires_ms = 0;
  uint32_t invite_uses = 0;
  uint64_t reports = 0;
  int64_t last_received_ms = 0;
};
// Every device that signed a report or enrolled, most recent report first.
Result<std::vector<DeviceRow>> ListDevices(db::Db& db);
Result<DeviceRow> LoadDevice(db::Db& db, const std::string& device_hex);

struct Count {
  std::string key;
  uint64_t n = 0;
};
struct Overview {
  uint64_t reports = 0, versions = 0, verified = 0, devices = 0, attachments = 0;
  std::vector<Count> by_month;  // "2025-08" (received), oldest first
  std::vector<Count> by_place;  // most first, at most 20
  std::vector<Count> by_form;   // most first
  std::vector<ListRow> points;  // reports with a geo point (rid, latitude, longitude, place)
};
Result<Overview> LoadOverview(db::Db& db);
// Distinct forms, for the filter.
Result<std::vector<std::string>> ListForms(db::Db& db);

// The desk's name for a report in the custody log: device hex ":" report id hex.
std::string ReportName(const ListRow& r);

}  // namespace dala::desk
