#include "desk/web/web_pages.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/encoding.h"
#include "desk/desk_table.h"
#include "desk/report_doc.h"

namespace dala::desk::web {
namespace {

// Untrusted text, escaped and isolated (<bdi>) so that a right-to-left override cannot reorder the page
// around it.
std::string Text(std::string_view s) { return "<bdi>" + Escape(s) + "</bdi>"; }


std::string Short(const std::string& hex, size_t n = 16) { return hex.size() > n ? hex.substr(0, n) + "…" : hex; }

std::string Layout(const PageContext& c, const std::string& active, const std::string& body) {
  auto link = [&](const char* href, const char* name) {
    return std::string("<a href=\"") + href + "\"" + (active == name ? " class=\"active\"" : "") + ">" + name + "</a>";
  };
  return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         "<meta name=\"referrer\" content=\"same-origin\"><base href=\"" + Escape(c.base) + "\"><title>" +
         Escape(c.title) + " · Dala desk</title><link rel=\"stylesheet\" href=\"static/desk.css\"></head><body>"
         "<header><span class=\"brand\">Dala desk</span><nav>" +
         link("/reports", "Reports") + link("/overview", "Overview") + link("/devices", "Devices") +
         link("/custody", "Custody log") +
         "</nav><form method=\"post\" action=\"logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"" +
         Escape(c.csrf) + "\"><button>Lock</button></form></header><main>" + body + "</main></body></html>\n";
}

std::string Hidden(const char* name, const std::string& value) {
  return std::string("<input type=\"hidden\" name=\"") + name + "\" value=\"" + Escape(value) + "\">";
}

std::string Option(const std::string& value, const std::string& label, bool selected) {
  return "<option value=\"" + Escape(value) + "\"" + (selected ? " selected" : "") + ">" + Escape(label) + "</option>";
}

std::string DateInput(int64_t ms) { return ms > 0 ? IsoTime(ms).substr(0, 10) : ""; }

// The query as URL parameters (each value percent-encoded).
std::string UrlEncode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(hex[ch >> 4]);
      out.push_back(hex[ch & 15]);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> QueryParams(const ListQuery& q) {
  std::vector<std::pair<std::string, std::string>> p;
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) p.emplace_back(k, v);
  };
  add("q", q.text);
  add("form", q.form);
  add("place", q.place);
  add("device", q.device);
  add("status", q.status);
  add("tag", q.tag);
  if (q.verified >= 0) p.emplace_back("verified", q.verified ? "yes" : "no");
  add("from", DateInput(q.from_ms));
  add("to", DateInput(q.to_ms > 0 ? q.to_ms - 86400000 : 0));
  if (q.sort != "received") p.emplace_back("sort", q.sort);
  if (!q.descending) p.emplace_back("dir", "asc");
  return p;
}

std::string Href(const ListQuery& q, uint32_t page) {
  std::string s = "reports?";
  for (const auto& [k, v] : QueryParams(q)) s += k + "=" + UrlEncode(v) + "&";
  return s + "page=" + std::to_string(page);
}



std::string FieldHtml(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return Text(v.text());
    case v1::FieldValue::kInteger: return Escape(std::to_string(v.integer()));
    case v1::FieldValue::kDecimal: return Text(v.decimal());
    case v1::FieldValue::kBoolean: return v.boolean() ? "yes" : "no";
    case v1::FieldValue::kTimestampMs: return Escape(WhenText(v.timestamp_ms()));
    case v1::FieldValue::kGeo: return Escape(GeoText(v.geo()));
    case v1::FieldValue::kPeople: {
      std::string s = "<ul class=\"people\">";
      for (const auto& p : v.people().people())
        s += "<li>" + Text(p.name()) + (p.role().empty() ? "" : " <span class=\"role\">" + Text(p.role()) + "</span>") +
             "</li>";
      return s + "</ul>";
    }
    case v1::FieldValue::VALUE_NOT_SET: return "—";
  }
  return "—";
}

// What changed from one version to the next, in plain words (keys escaped).
std::vector<std::string> Changes(const v1::ReportContent& a, const v1::ReportContent& b) {
  std::vector<std::string> out;
  std::map<std::string, std::string> before, after;
  for (const auto& f : a.fields()) before[f.key()] = f.value().SerializeAsString();
  for (const auto& f : b.fields()) after[f.key()] = f.value().SerializeAsString();
  for (const auto& [k, v] : after) {
    auto it = before.find(k);
    if (it == before.end()) out.push_back("added " + Text(k));
    else if (it->second != v) out.push_back("changed " + Text(k));
  }
  for (const auto& [k, v] : before)
    if (!after.count(k)) out.push_back("removed " + Text(k));
  if (a.narrative() != b.narrative()) out.push_back("changed the narrative");
  std::set<std::string> att_a, att_b;
  for (const auto& x : a.attachments()) att_a.insert(x.attachment_id());
  for (const auto& x : b.attachments()) att_b.insert(x.attachment_id());
  for (const auto& x : att_b)
    if (!att_a.count(x)) out.push_back("added an attachment");
  for (const auto& x : att_a)
    if (!att_b.count(x)) out.push_back("removed an attachment");
  if (out.empty()) out.push_back("nothing in its content (sealed again)");
  return out;
}

// A point on a map, linking to its report.
std::string Point(const ListRow* p, double x, double y) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "<a href=\"report/%lld\"><circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" class=\"point\">",
                static_cast<long long>(p->rid), x, y);
  return buf + ("<title>" + Escape(p->place.empty() ? p->report_id : p->place) + "</title></circle></a>");
}

// The points on the organisation's own tiles (Web Mercator), at the highest zoom the tiles have where they
// all fit, centred; empty when no zoom of the tiles shows them (the caller then draws the map without).
std::string TiledMap(const std::vector<const ListRow*>& points, int width, int height, const TileSource& tiles) {
  double lat0 = 90, lat1 = -90, lon0 = 180, lon1 = -180;
  for (const ListRow* p : points) {
    lat0 = std::min(lat0, *p->latitude), lat1 = std::max(lat1, *p->latitude);
    lon0 = std::min(lon0, *p->longitude), lon1 = std::max(lon1, *p->longitude);
  }
  // One point alone is shown with its surroundings, not at the closest zoom the tiles have.
  const int top = points.size() == 1 || (lat0 == lat1 && lon0 == lon1) ? std::min(tiles.max_zoom(), 15) : tiles.max_zoom();
  for (int z = top; z >= tiles.min_zoom(); --z) {
    const MapPixel a = Project(lat1, lon0, z), b = Project(lat0, lon1, z);
    if (b.x - a.x > width * 0.85 || b.y - a.y > height * 0.85) continue;
    const double world = kTileSize * std::ldexp(1.0, z);
    double ox = (a.x + b.x - width) / 2, oy = (a.y + b.y - height) / 2;
    if (world >= height) oy = std::clamp(oy, 0.0, world - height);
    const int64_t n = int64_t{1} << z;
    std::string images;
    char buf[200];
    for (int64_t ty = static_cast<int64_t>(std::floor(oy / kTileSize)); ty * kTileSize < oy + height; ++ty) {
      if (ty < 0 || ty >= n) continue;
      for (int64_t tx = static_cast<int64_t>(std::floor(ox / kTileSize)); tx * kTileSize < ox + width; ++tx) {
        const int64_t wx = ((tx % n) + n) % n;  // across the antimeridian
        if (!tiles.Has(z, wx, ty)) continue;
        std::snprintf(buf, sizeof buf,
                      "<image href=\"tiles/%d/%lld/%lld\" x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\"/>", z,
                      static_cast<long long>(wx), static_cast<long long>(ty), tx * kTileSize - ox, ty * kTileSize - oy,
                      kTileSize, kTileSize);
        images += buf;
      }
    }
    if (images.empty()) continue;
    std::string s = "<svg class=\"map\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
                    "\" width=\"" + std::to_string(width) + "\" height=\"" + std::to_string(height) +
                    "\" role=\"img\" aria-label=\"map of reports\"><rect width=\"100%\" height=\"100%\" class=\"sea\"/>" +
                    images;
    for (const ListRow* p : points) {
      const MapPixel at = Project(*p->latitude, *p->longitude, z);
      s += Point(p, at.x - ox, at.y - oy);
    }
    return s + "</svg><p class=\"muted\">Map tiles from this desk's own tile directory (zoom " + std::to_string(z) +
           "); nothing is fetched from anywhere else." +
           (tiles.attribution().empty() ? std::string() : " " + Escape(tiles.attribution())) + "</p>";
  }
  return "";
}

// Points on an equirectangular frame that fits them (no tiles: works offline), or on the organisation's own
// tiles when the desk has them. Each point links to its report.
std::string MapSvg(const std::vector<const ListRow*>& points, int width, int height, const TileSource* tiles) {
  if (points.empty()) return "<p class=\"muted\">No report carries a geo point.</p>";
  if (tiles != nullptr)
    if (std::string tiled = TiledMap(points, width, height, *tiles); !tiled.empty()) return tiled;
  double lat0 = 90, lat1 = -90, lon0 = 180, lon1 = -180;
  for (const ListRow* p : points) {
    lat0 = std::min(lat0, *p->latitude);
    lat1 = std::max(lat1, *p->latitude);
    lon0 = std::min(lon0, *p->longitude);
    lon1 = std::max(lon1, *p->longitude);
  }
  const double pad_lat = std::max(0.05, (lat1 - lat0) * 0.1), pad_lon = std::max(0.05, (lon1 - lon0) * 0.1);
  lat0 -= pad_lat, lat1 += pad_lat, lon0 -= pad_lon, lon1 += pad_lon;
  auto x = [&](double lon) { return (lon - lon0) / (lon1 - lon0) * width; };
  auto y = [&](double lat) { return (lat1 - lat) / (lat1 - lat0) * height; };
  std::string s = "<svg class=\"map\" viewBox=\"0 0 " + std::to_string(width) + " " + std::to_string(height) +
                  "\" width=\"" + std::to_string(width) + "\" height=\"" + std::to_string(height) +
                  "\" role=\"img\" aria-label=\"map of reports\"><rect width=\"100%\" height=\"100%\" class=\"sea\"/>";
  char buf[256];
  for (int i = 1; i < 4; ++i) {  // a graticule with its degrees
    const double lon = lon0 + (lon1 - lon0) * i / 4, lat = lat0 + (lat1 - lat0) * i / 4;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/><text x=\"%.1f\" y=\"%d\" "
                  "class=\"axis\">%.2f°</text><line x1=\"0\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                  "<text x=\"2\" y=\"%.1f\" class=\"axis\">%.2f°</text>",
                  x(lon), x(lon), height, x(lon) + 2, height - 4, lon, y(lat), width, y(lat), y(lat) - 2, lat);
    s += buf;
  }
  for (const ListRow* p : points) s += Point(p, x(*p->longitude), y(*p->latitude));
  return s + "</svg><p class=\"muted\">Drawn without map tiles, so it works offline" +
         (tiles != nullptr ? " (the desk's own tiles do not cover these points)" : std::string()) + ".</p>";
}

// A horizontal bar chart, drawn on the server.
std::string Bars(const std::vector<Count>& counts, const std::string& link_param) {
  if (counts.empty()) return "<p class=\"muted\">Nothing yet.</p>";
  uint64_t most = 1;
  for (const auto& c : counts) most = std::max(most, c.n);
  std::string s = "<table class=\"bars\">";
  for (const auto& c : counts) {
    const int width = static_cast<int>(std::lround(300.0 * static_cast<double>(c.n) / static_cast<double>(most)));
    std::string label = c.key.empty() ? "(none)" : c.key;
    s += "<tr><th>" +
         (link_param.empty() ? Text(label)
                             : "<a href=\"reports?" + link_param + "=" + UrlEncode(c.key) + "\">" + Text(label) + "</a>") +
         "</th><td><svg width=\"" + std::to_string(width + 2) + "\" height=\"14\"><rect width=\"" +
         std::to_string(std::max(width, 1)) + "\" height=\"14\" class=\"bar\"/></svg> " + std::to_string(c.n) +
         "</td></tr>";
  }
  return s + "</table>";
}

// A column chart of reports per month.
std::string Columns(const std::vector<Count>& counts) {
  if (counts.empty()) return "<p class=\"muted\">Nothing yet.</p>";
  uint64_t most = 1;
  for (const auto& c : counts) most = std::max(most, c.n);
  const int bw = std::clamp(600 / static_cast<int>(counts.size()), 4, 40), h = 160;
  const int width = bw * static_cast<int>(counts.size());
  std::string s = "<svg class=\"columns\" width=\"" + std::to_string(width) + "\" height=\"" + std::to_string(h + 30) +
                  "\" role=\"img\" aria-label=\"reports per month\">";
  for (size_t i = 0; i < counts.size(); ++i) {
    const int ch = static_cast<int>(std::lround(static_cast<double>(h) * static_cast<double>(counts[i].n) /
                                                static_cast<double>(most)));
    s += "<rect x=\"" + std::to_string(static_cast<int>(i) * bw + 1) + "\" y=\"" + std::to_string(h - ch) +
         "\" width=\"" + std::to_string(bw - 2) + "\" height=\"" + std::to_string(std::max(ch, 1)) +
         "\" class=\"bar\"><title>" + Escape(counts[i].key) + ": " + std::to_string(counts[i].n) + "</title></rect>";
    if (i == 0 || i + 1 == counts.size() || counts.size() <= 12)
      s += "<text x=\"" + std::to_string(static_cast<int>(i) * bw) + "\" y=\"" + std::to_string(h + 14) +
           "\" class=\"axis\">" + Escape(counts[i].key) + "</text>";
  }
  return s + "</svg>";
}

std::string CustodyTable(const std::vector<CustodyEntry>& entries) {
  if (entries.empty()) return "<p class=\"muted\">No entries.</p>";
  std::string s = "<table class=\"custody\"><thead><tr><th>#</th><th>When</th><th>Action</th><th>What</th><th>Hash</th>"
                  "</tr></thead><tbody>";
  for (const auto& e : entries)
    s += "<tr><td>" + std::to_string(e.seq) + "</td><td>" + Escape(WhenText(e.time_ms)) + "</td><td>" + Escape(e.action) +
         "</td><td>" + Text(e.detail) + "</td><td class=\"mono\">" + Escape(Short(encoding::ToHex(e.hash))) + "</td></tr>";
  return s + "</tbody></table>";
}

}  // namespace

std::string Escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\0': out += "&#xFFFD;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

bool IsPassiveImage(std::string_view mime) {
  return mime == "image/jpeg" || mime == "image/png" || mime == "image/gif" || mime == "image/webp";
}

bool IsPlayableMedia(std::string_view mime) {
  return mime == "video/mp4" || mime == "video/webm" || mime == "video/ogg" || mime == "audio/mpeg" ||
         mime == "audio/ogg" || mime == "audio/mp4" || mime == "audio/aac" || mime == "audio/wav" ||
         mime == "audio/webm";
}

std::string ReportsPage(const PageContext& c, const ListQuery& q, const ListPage& page,
                        const std::vector<std::string>& forms, double server_ms) {
  std::string s = "<h1>Reports</h1><form method=\"get\" action=\"reports\" class=\"filters\">"
                  "<label>Search <input type=\"search\" name=\"q\" value=\"" + Escape(q.text) + "\"></label>"
                  "<label>Form <select name=\"form\">" + Option("", "any", q.form.empty());
  for (const auto& f : forms) s += Option(f, f, f == q.form);
  s += "</select></label><label>Place <input name=\"place\" value=\"" + Escape(q.place) + "\"></label>"
       "<label>Device <input name=\"device\" value=\"" + Escape(q.device) + "\" size=\"10\"></label>"
       "<label>Case <select name=\"status\">" + Option("", "any", q.status.empty());
  for (const char* st : kCaseStatuses) s += Option(st, st, q.status == st);
  s += "</select></label><label>Tag <input name=\"tag\" value=\"" + Escape(q.tag) + "\" size=\"10\"></label>"
       "<label>Verified <select name=\"verified\">" + Option("", "either", q.verified < 0) +
       Option("yes", "verified", q.verified == 1) + Option("no", "failed", q.verified == 0) +
       "</select></label><label>From <input type=\"date\" name=\"from\" value=\"" + DateInput(q.from_ms) +
       "\"></label><label>To <input type=\"date\" name=\"to\" value=\"" +
       DateInput(q.to_ms > 0 ? q.to_ms - 86400000 : 0) + "\"></label><label>Sort <select name=\"sort\">";
  for (const char* k : {"received", "sealed", "created", "form", "place", "status"}) s += Option(k, k, q.sort == k);
  s += "</select></label><label>Order <select name=\"dir\">" + Option("desc", "newest / Z first", q.descending) +
       Option("asc", "oldest / A first", !q.descending) + "</select></label><button>Show</button></form>";
  const uint32_t per = q.per_page == 0 ? 50 : q.per_page;
  const uint64_t pages = (page.total + per - 1) / per;
  char timing[64];
  std::snprintf(timing, sizeof timing, "%.1f", server_ms);
  s += "<p class=\"count\"><span id=\"total\">" + std::to_string(page.total) + "</span> reports" +
       (pages > 1 ? ", page " + std::to_string(q.page + 1) + " of " + std::to_string(pages) : std::string()) +
       " <span class=\"muted\">(" + timing + " ms)</span></p>";
  s += "<form method=\"post\" action=\"export\" class=\"export\">" + Hidden("csrf", c.csrf);
  for (const auto& [k, v] : QueryParams(q)) s += Hidden(k.c_str(), v);
  s += "<button name=\"format\" value=\"csv\">Export CSV</button><button name=\"format\" value=\"jsonl\">Export JSON "
       "Lines</button></form>";
  s += "<table class=\"reports\"><thead><tr><th>Received</th><th>Report</th><th>Form</th><th>Place</th><th>Narrative</th>"
       "<th>Case</th><th>Tags</th><th>Verified</th></tr></thead><tbody>";
  for (const auto& r : page.rows)
    s += "<tr><td>" + Escape(WhenText(r.received_ms)) + "</td><td class=\"mono\"><a href=\"report/" + std::to_string(r.rid) +
         "\">" + Escape(Short(r.report_id, 12)) + "</a>" + (r.version > 1 ? " v" + std::to_string(r.version) : "") +
         "</td><td>" + Text(r.form) + "</td><td>" + Text(r.place) + "</td><td class=\"excerpt\">" + Text(r.excerpt) +
         "</td><td>" + Escape(r.status) + "</td><td>" + Text(r.tags) + "</td><td>" +
         (r.verified ? "<span class=\"ok\">verified</span>" : "<span class=\"bad\">failed</span>") + "</td></tr>";
  s += "</tbody></table><nav class=\"pages\">";
  if (q.page > 0) s += "<a rel=\"prev\" href=\"" + Escape(Href(q, q.page - 1)) + "\">← newer page</a> ";
  if (q.page + 1 < pages) s += "<a rel=\"next\" href=\"" + Escape(Href(q, q.page + 1)) + "\">next page →</a>";
  s += "</nav>";
  return Layout(c, "Reports", s);
}

std::string ReportPage(const PageContext& c, const ReportDetail& d, const DeviceRow* device,
                       const std::vector<CustodyEntry>& custody, const std::string& root_hex) {
  const ListRow& r = d.row;
  const VersionRow* latest = d.versions.empty() ? nullptr : &d.versions.back();
  std::string s = "<h1>Report <span class=\"mono\">" + Escape(r.report_id) + "</span></h1><p class=\"lead\">" +
                  Text(r.form) + " · version " + std::to_string(r.version) + " · case: <strong id=\"case-status\">" +
                  Escape(r.status) + "</strong>" + (r.tags.empty() ? "" : " · tags: " + Text(r.tags)) + " · " +
                  (r.verified ? "<span class=\"ok\" id=\"verdict\">verified</span>"
                              : "<span class=\"bad\" id=\"verdict\">NOT verified</span>") +
                  "</p>";
  // Verification panel: each check, in plain words.
  s += "<section class=\"verification\" id=\"verification\"><h2>Verification</h2><ul>";
  auto check = [&](bool ok, const std::string& what) {
    s += std::string("<li class=\"") + (ok ? "ok" : "bad") + "\">" + (ok ? "✓ " : "✗ ") + what + "</li>";
  };
  if (latest != nullptr) {
    nlohmann::json detail = nlohmann::json::parse(latest->detail_json, nullptr, false);
    nlohmann::json problems = nlohmann::json::parse(latest->problems_json, nullptr, false);
    const bool clean = latest->verified;
    check(clean || !problems.is_array() || problems.empty(),
          "Signed by device <span class=\"mono\">" + Escape(Short(r.device, 24)) +
              "</span>: its signature over the sealed envelope and over the content inside it both hold, and the "
              "content opened with the organisation's key.");
    if (device != nullptr && device->enrolled_ms > 0)
      check(true, "The device enrolled on " + Escape(WhenText(device->enrolled_ms)) +
                      " through an invite the organisation's root signed (issued " + Escape(WhenText(device->invite_issued_ms)) +
                      ", for " + std::to_string(device->invite_uses) + " device(s), invite key <span class=\"mono\">" +
                      Escape(Short(device->invite_key)) + "</span>).");
    else
      check(false, "No enrolment of this device through an invite of the organisation is held.");
    if (!latest->server_key.empty())
      check(true, "Receipt signed by server key <span class=\"mono\">" + Escape(Short(latest->server_key)) +
                      "</span>, which the organisation's statement authorised at the time: stored as number " +
                      std::to_string(latest->sequence) + " on " + Escape(WhenText(latest->received_ms)) + ".");
    else
      check(false, "No receipt from a server the organisation authorised.");
    if (latest->leaf_index >= 0)
      check(true, "In the server's append-only log at position " + std::to_string(latest->leaf_index) +
                      ", under a log head its server signed; the desk's imports of that server only ever extended it.");
    else
      check(false, "Not found in the server's log.");
    if (detail.is_object() && detail.contains("timestamp") && detail["timestamp"].is_object())
      check(true, "Time-stamped: received no later than " +
                      Escape(WhenText(detail["timestamp"].value("no_later_than_ms", int64_t{0}))) + " (" +
                      Escape(detail["timestamp"].value("tsa", std::string())) + ").");
    else
      s += "<li class=\"none\">No trusted time-stamp over this report (none was checked at import).</li>";
    if (d.versions.size() > 1)
      check(clean, "Versions 1 to " + std::to_string(r.version) +
                       " form a chain: each names the hash of the one before, from the same device, the same form.");
    if (!d.attachments.empty()) {
      bool all = std::all_of(d.attachments.begin(), d.attachments.end(), [](const AttachmentRow& a) { return a.verified; });
      check(all, std::to_string(d.attachments.size()) +
                     " attachment(s) decrypted end to end and matched the hashes the device signed.");
    }
    if (problems.is_array())
      for (const auto& p : problems) check(false, Text(p.is_string() ? p.get<std::string>() : p.dump()));
  }
  s += "</ul><p class=\"muted\">The organisation: <span class=\"mono\">" + Escape(Short(root_hex, 24)) +
       "</span>. Every check is described in docs/protocol.md.</p></section>";

  if (latest != nullptr) {
    const v1::ReportContent& content = latest->content;
    s += "<section><h2>Content</h2><table class=\"fields\"><thead><tr><th>Field</th><th>Type</th><th>Value</th></tr>"
         "</thead><tbody>";
    for (const auto& f : content.fields())
      s += "<tr><th>" + Text(f.key()) + "</th><td>" + FieldTypeName(f.value()) + "</td><td>" + FieldHtml(f.value()) +
           "</td></tr>";
    s += "</tbody></table><h3>Narrative</h3><div class=\"narrative\" dir=\"auto\" id=\"narrative\">" +
         Escape(content.narrative()) + "</div>";
    s += "<h3>Capture</h3><dl><dt>Created</dt><dd>" + Escape(WhenText(content.created_ms())) + "</dd><dt>Sealed</dt><dd>" +
         Escape(WhenText(content.sealed_ms())) + "</dd><dt>Device clock</dt><dd>" +
         Escape(WhenText(content.capture().device_time_ms())) + " (the phone's clock, not trusted)</dd><dt>Location</dt><dd>" +
         (content.capture().has_location() ? Escape(GeoText(content.capture().location())) : std::string("not recorded")) +
         "</dd></dl>";
    if (r.latitude) {
      std::vector<const ListRow*> one{&r};
      s += "<h3>Map</h3>" + MapSvg(one, 480, 240, c.tiles);
    }
    s += "</section>";
  }

  s += "<section><h2>Attachments</h2>";
  if (d.attachments.empty()) s += "<p class=\"muted\">None.</p>";
  for (const auto& a : d.attachments) {
    const std::string url = "media/" + std::to_string(r.rid) + "/" + a.id;
    s += "<figure class=\"attachment\">";
    if (!a.verified || a.file.empty())
      s += "<p class=\"bad\">This attachment did not verify; it is not served.</p>";
    else if (IsPassiveImage(a.mime))
      s += "<img src=\"" + url + "\" alt=\"attachment " + Escape(a.id) + "\">";
    else if (a.mime.rfind("video/", 0) == 0 && IsPlayableMedia(a.mime))
      s += "<video controls preload=\"metadata\" src=\"" + url + "\"></video>";
    else if (a.mime.rfind("audio/", 0) == 0 && IsPlayableMedia(a.mime))
      s += "<audio controls preload=\"metadata\" src=\"" + url + "\"></audio>";
    s += "<figcaption>" + Text(a.mime) + ", " + std::to_string(a.size) + " bytes · BLAKE2b " +
         Escape(Short(encoding::ToHex(a.plaintext_hash), 24)) +
         (a.verified && !a.file.empty() ? " · <a href=\"" + url + "?download=1\">download</a>" : std::string()) +
         "</figcaption></figure>";
  }
  s += "</section>";

  s += "<section><h2>Versions</h2><ol class=\"versions\">";
  for (size_t i = 0; i < d.versions.size(); ++i) {
    const VersionRow& v = d.versions[i];
    s += "<li>version " + std::to_string(v.version) + ", sealed " + Escape(WhenText(v.content.sealed_ms())) + ", received " +
         Escape(WhenText(v.received_ms)) + (v.verified ? "" : " <span class=\"bad\">(failed)</span>");
    if (i > 0) {
      s += ": ";
      const auto changes = Changes(d.versions[i - 1].content, v.content);
      for (size_t k = 0; k < changes.size(); ++k) s += (k ? "; " : "") + changes[k];
    }
    s += "</li>";
  }
  s += "</ol></section>";

  s += "<section class=\"case\"><h2>Case work</h2><form method=\"post\" action=\"report/" + std::to_string(r.rid) +
       "/case\" id=\"case-form\">" + Hidden("csrf", c.csrf) + "<label>Status <select name=\"status\">";
  for (const char* st : kCaseStatuses) s += Option(st, st, r.status == st);
  s += "</select></label><label>Tags <input name=\"tags\" value=\"" + Escape(r.tags) +
       "\" placeholder=\"words separated by spaces\"></label><button>Save</button></form>"
       "<form method=\"post\" action=\"report/" + std::to_string(r.rid) + "/note\" id=\"note-form\">" +
       Hidden("csrf", c.csrf) +
       "<label>Note <textarea name=\"note\" rows=\"3\" cols=\"60\" maxlength=\"20000\"></textarea></label>"
       "<button>Add note</button></form><form method=\"post\" action=\"report/" + std::to_string(r.rid) +
       "/evidence\" id=\"evidence-form\">" + Hidden("csrf", c.csrf) +
       "<button>Evidence package</button> <span class=\"muted\">a ZIP anyone can check with dala verify and the "
       "organisation's identity</span></form><ul class=\"notes\" id=\"notes\">";
  for (const auto& n : d.notes) s += "<li><span class=\"muted\">" + Escape(WhenText(n.time_ms)) + "</span> " + Text(n.text) + "</li>";
  s += "</ul></section><section><h2>Custody</h2>" + CustodyTable(custody) + "</section>";
  PageContext pc = c;
  return Layout(pc, "Reports", s);
}

std::string OverviewPage(const PageContext& c, const Overview& o) {
  std::string s = "<h1>Overview</h1><p class=\"lead\">" + std::to_string(o.reports) + " reports (" +
                  std::to_string(o.versions) + " versions) from " + std::to_string(o.devices) + " devices; " +
                  std::to_string(o.verified) + " verified; " + std::to_string(o.attachments) + " attachments.</p>";
  s += "<section><h2>Reports received per month</h2>" + Columns(o.by_month) + "</section>";
  s += "<section class=\"two\"><div><h2>By place</h2>" + Bars(o.by_place, "place") + "</div><div><h2>By form</h2>" +
       Bars(o.by_form, "form") + "</div></section>";
  std::vector<const ListRow*> pts;
  for (const auto& p : o.points) pts.push_back(&p);
  s += "<section><h2>Map</h2>" + MapSvg(pts, 900, 450, c.tiles) + "</section>";
  return Layout(c, "Overview", s);
}

std::string DevicesPage(const PageContext& c, const std::vector<DeviceRow>& devices) {
  std::string s = "<h1>Devices</h1><table class=\"devices\"><thead><tr><th>Device key</th><th>Enrolled</th>"
                  "<th>Invite issued</th><th>Server</th><th>Reports</th><th>Last report</th></tr></thead><tbody>";
  for (const auto& d : devices)
    s += "<tr><td class=\"mono\"><a href=\"reports?device=" + d.device.substr(0, 16) + "\">" + Escape(Short(d.device, 24)) +
         "</a></td><td>" + Escape(WhenText(d.enrolled_ms)) + "</td><td>" + Escape(WhenText(d.invite_issued_ms)) +
         "</td><td class=\"mono\">" + Escape(Short(d.server_key)) + "</td><td>" + std::to_string(d.reports) + "</td><td>" +
         Escape(WhenText(d.last_received_ms)) + "</td></tr>";
  s += "</tbody></table>";
  return Layout(c, "Devices", s);
}

std::string CustodyPage(const PageContext& c, const std::vector<CustodyEntry>& all, const std::string& verdict) {
  std::string s = "<h1>Custody log</h1><p class=\"" + std::string(verdict.empty() ? "ok" : "bad") + "\" id=\"custody-verdict\">" +
                  (verdict.empty() ? "All " + std::to_string(all.size()) +
                                         " entries link by hash and carry the organisation's signature."
                                   : Escape(verdict)) +
                  "</p><form method=\"post\" action=\"custody/export\">" + Hidden("csrf", c.csrf) +
                  "<button>Download (JSON Lines)</button></form>" + CustodyTable(all);
  return Layout(c, "Custody log", s);
}

std::string MessagePage(const std::string& title, const std::string& message, const std::string& base) {
  return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + Escape(title) +
         " · Dala desk</title>" +
         (base.empty() ? std::string() : "<link rel=\"stylesheet\" href=\"" + Escape(base) + "static/desk.css\">") +
         "</head><body><main><h1>" +
         Escape(title) + "</h1><p>" + Escape(message) + "</p></main></body></html>\n";
}

const char kDeskCss[] = R"css(
:root { --ink: #1d232a; --muted: #68707a; --line: #d8dde3; --ok: #17663a; --bad: #a3161b; --accent: #1f4e8c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: #f6f7f9; }
header { display: flex; align-items: center; gap: 1.5em; padding: .6em 1.2em; background: #1d232a; color: #fff; }
header a { color: #dfe7f1; margin-right: 1em; text-decoration: none; }
header a.active { color: #fff; border-bottom: 2px solid #fff; }
.brand { font-weight: 600; }
.logout { margin-left: auto; }
main { padding: 1em 1.5em; max-width: 1400px; }
h1 { font-size: 1.5em; margin: .3em 0; } h2 { font-size: 1.2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: .35em .5em; text-align: left; vertical-align: top; }
td.excerpt { max-width: 40em; overflow-wrap: anywhere; }
.mono { font-family: ui-monospace, monospace; font-size: .92em; }
.muted, .none { color: var(--muted); }
.ok { color: var(--ok); } .bad { color: var(--bad); font-weight: 600; }
.filters { display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: end; background: #fff; padding: .7em; border: 1px solid var(--line); }
.filters label { display: flex; flex-direction: column; font-size: .85em; color: var(--muted); }
.export { margin: .5em 0; }
.narrative { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 30em; overflow: auto; background: #fff; border: 1px solid var(--line); padding: .7em; unicode-bidi: plaintext; }
.verification ul { list-style: none; padding: 0; }
.verification li { padding: .25em 0; }
bdi { unicode-bidi: isolate; }
figure.attachment img, figure.attachment video { max-width: 100%; max-height: 480px; display: block; background: #000; }
.map .sea { fill: #e9f0f6; } .map .grid { stroke: #c4d1de; stroke-width: 1; } .map .point { fill: var(--bad); stroke: #fff; stroke-width: 1.5; }
.axis { font-size: 10px; fill: var(--muted); }
.bar { fill: var(--accent); }
.bars th { width: 14em; font-weight: normal; }
.two { display: flex; gap: 2em; flex-wrap: wrap; } .two > div { flex: 1; min-width: 20em; }
.case form { margin: .5em 0; display: flex; gap: 1em; align-items: end; flex-wrap: wrap; }
.case label { display: flex; flex-direction: column; font-size: .85em; color: var(--muted); }
ul.people { margin: 0; padding-left: 1.2em; } .role { color: var(--muted); }
dl { display: grid; grid-template-columns: 10em 1fr; } dt { color: var(--muted); }
)css";

}  // namespace dala::desk::web
