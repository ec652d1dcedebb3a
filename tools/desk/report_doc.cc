#include "desk/report_doc.h"

#include <sodium.h>

#include <cstdio>

#include "base/clock.h"
#include "desk/web/web_pages.h"

namespace dala::desk {
namespace {

constexpr char kCss[] =
    "body{font:15px/1.45 'DejaVu Sans',sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#111}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #999}h3{font-size:1em}"
    ".field b{display:inline-block;min-width:12em}.mono,code,pre{font-family:'DejaVu Sans Mono',monospace;"
    "overflow-wrap:anywhere}.ok{color:#075e07}.bad{color:#a00000;font-weight:bold}.none{color:#555}"
    "blockquote{white-space:pre-wrap;border-left:3px solid #999;margin:0.5em 0;padding-left:1em;"
    "overflow-wrap:anywhere}ul.checks{list-style:none;padding-left:0}";

// The Content-Security-Policy source for exactly kCss: 'sha256-BASE64'.
std::string CssHashSource() {
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(kCss), sizeof kCss - 1);
  char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, h, sizeof h, sodium_base64_VARIANT_ORIGINAL);
  return std::string("'sha256-") + b64 + "'";
}

// Untrusted text: escaped, and isolated so that a right-to-left override cannot reorder what follows it.
std::string Text(std::string_view s) { return "<bdi>" + web::Escape(s) + "</bdi>"; }

}  // namespace

std::string DocHtml(const Doc& doc) {
  std::string s =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" "
      "content=\"default-src 'none'; style-src " + CssHashSource() + "\"><title>" + web::Escape(doc.title) +
      "</title><style>" + kCss + "</style></head><body><h1>" + web::Escape(doc.title) + "</h1>\n";
  bool in_checks = false;
  for (const DocBlock& b : doc.blocks) {
    const bool check = b.kind == BlockKind::kCheckOk || b.kind == BlockKind::kCheckFailed || b.kind == BlockKind::kCheckNone;
    if (check != in_checks) {
      s += check ? "<ul class=\"checks\">" : "</ul>\n";
      in_checks = check;
    }
    switch (b.kind) {
      case BlockKind::kHeading: s += "<h2>" + Text(b.text) + "</h2>\n"; break;
      case BlockKind::kSubheading: s += "<h3>" + Text(b.text) + "</h3>\n"; break;
      case BlockKind::kParagraph: s += "<p>" + Text(b.text) + "</p>\n"; break;
      case BlockKind::kField:
        s += "<div class=\"field\"><b>" + Text(b.label) + "</b> " +
             (b.mono ? "<span class=\"mono\">" + Text(b.text) + "</span>" : Text(b.text)) + "</div>\n";
        break;
      case BlockKind::kCheckOk: s += "<li class=\"ok\">✓ " + Text(b.text) + "</li>\n"; break;
      case BlockKind::kCheckFailed: s += "<li class=\"bad\">✗ " + Text(b.text) + "</li>\n"; break;
      case BlockKind::kCheckNone: s += "<li class=\"none\">– " + Text(b.text) + "</li>\n"; break;
      case BlockKind::kQuote: s += "<blockquote dir=\"auto\">" + web::Escape(b.text) + "</blockquote>\n"; break;
      case BlockKind::kCode: s += "<pre>" + web::Escape(b.text) + "</pre>\n"; break;
    }
  }
  if (in_checks) s += "</ul>\n";
  if (!doc.footer.empty()) s += "<hr><p class=\"none\">" + Text(doc.footer) + "</p>\n";
  return s + "</body></html>\n";
}

std::string Capped(std::string_view s, size_t max_chars, std::string_view whole_in) {
  size_t chars = 0, cut = s.size();
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // a continuation byte
    if (chars == max_chars) {
      cut = i;
      break;
    }
    ++chars;
  }
  if (cut == s.size()) return std::string(s);
  size_t rest = 0;
  for (size_t i = cut; i < s.size(); ++i) rest += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return std::string(s.substr(0, cut)) + " […] (" + std::to_string(rest) +
         " more characters are left out here: the whole text is in " + std::string(whole_in) + ")";
}

std::string Iso(std::string_view untrusted) {
  std::string out = "\u2068";
  for (size_t i = 0; i < untrusted.size(); ++i) {
    // U+2066..U+2069 are E2 81 A6..A9 in UTF-8.
    if (i + 2 < untrusted.size() && untrusted.substr(i, 2) == "\xE2\x81" &&
        static_cast<unsigned char>(untrusted[i + 2]) >= 0xA6 && static_cast<unsigned char>(untrusted[i + 2]) <= 0xA9) {
      out += "\uFFFD";
      i += 2;
      continue;
    }
    out.push_back(untrusted[i]);
  }
  return out + "\u2069";
}

std::string FieldTypeName(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return "text";
    case v1::FieldValue::kInteger: return "integer";
    case v1::FieldValue::kDecimal: return "decimal";
    case v1::FieldValue::kBoolean: return "yes/no";
    case v1::FieldValue::kTimestampMs: return "time";
    case v1::FieldValue::kGeo: return "place (geo)";
    case v1::FieldValue::kPeople: return "people";
    case v1::FieldValue::VALUE_NOT_SET: return "—";
  }
  return "—";
}

std::string GeoText(const v1::GeoPoint& g) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.6f, %.6f", g.latitude(), g.longitude());
  std::string s = buf;
  if (g.accuracy_m() > 0 && g.accuracy_m() < 1e9)  // a phone's value: no cast of infinity or worse
    s += " (±" + std::to_string(static_cast<long long>(g.accuracy_m())) + " m)";
  return s;
}

std::string WhenText(int64_t ms) {
  if (ms <= 0) return "—";
  if (ms > 253402300799999) return "(not a time: " + std::to_string(ms) + " ms)";  // after 9999-12-31
  std::string iso = IsoTime(ms);  // 2025-08-17T07:00:00.000Z
  return iso.substr(0, 10) + " " + iso.substr(11, 5) + " UTC";
}

std::string FieldText(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return v.text();
    case v1::FieldValue::kInteger: return std::to_string(v.integer());
    case v1::FieldValue::kDecimal: return v.decimal();
    case v1::FieldValue::kBoolean: return v.boolean() ? "yes" : "no";
    case v1::FieldValue::kTimestampMs: return WhenText(v.timestamp_ms());
    case v1::FieldValue::kGeo: return GeoText(v.geo());
    case v1::FieldValue::kPeople: {
      std::string s;
      for (const auto& p : v.people().people())
        s += (s.empty() ? "" : "; ") + p.name() + (p.role().empty() ? "" : " (" + p.role() + ")");
      return s;
    }
    case v1::FieldValue::VALUE_NOT_SET: return "—";
  }
  return "—";
}

}  // namespace dala::desk
