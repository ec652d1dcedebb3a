// A document for people, drawn from the same blocks as HTML (report_doc.cc) and as PDF (report_pdf.cc): the
// evidence package's verification report (verification.html, verification.pdf; docs/evidence.md).
//
// Every text is plain and untrusted (phones wrote much of it): the HTML form escapes it and isolates it for
// bidirectional text; the PDF form lays it out as text, never as markup. Neither interprets anything in it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "dala/v1/report.pb.h"

namespace dala::desk {

enum class BlockKind {
  kHeading,     // a section: one report, or one part of the package
  kSubheading,  // a part of a section
  kParagraph,
  kField,       // label: text
  kCheckOk,     // a check that held
  kCheckFailed,  // a check that did not
  kCheckNone,   // nothing to check (no time-stamp, say)
  kQuote,       // what a phone wrote at length (the narrative): its own paragraphs, its own direction
  kCode,        // a command to type, a hash, a key: fixed width, broken anywhere
};

struct DocBlock {
  BlockKind kind = BlockKind::kParagraph;
  std::string label;  // kField only
  std::string text;
  bool mono = false;  // kField: the value is a hash or a key (fixed width, broken anywhere)
};

struct Doc {
  std::string title;
  std::string footer;  // on every PDF page, beside "page N of M"
  std::vector<DocBlock> blocks;

  void Add(BlockKind kind, std::string text) { blocks.push_back({kind, "", std::move(text), false}); }
  void Field(std::string label, std::string text, bool mono = false) {
    blocks.push_back({BlockKind::kField, std::move(label), std::move(text), mono});
  }
  void Check(bool ok, std::string text) { Add(ok ? BlockKind::kCheckOk : BlockKind::kCheckFailed, std::move(text)); }
};

// A whole HTML page; its only style is in the page, allowed by a Content-Security-Policy hash, and nothing
// else loads or runs.
std::string DocHtml(const Doc& doc);

// A4 pages, text laid out by Pango (any script, right to left too; a character no font has is drawn as its
// code point in a box), the fonts' glyphs embedded, every page numbered "N of M". `created_ms` is the
// document's creation date in its metadata. A block is laid out whole up to kMaxBlockChars characters and
// cut there (saying so): callers cap what phones wrote well below that.
inline constexpr size_t kMaxBlockChars = 30000;
Result<std::string> DocPdf(const Doc& doc, int64_t created_ms);

// At most `max_chars` characters (code points) of s, cut at a character boundary; a cut says how much was
// left out and where the whole is (`whole_in`).
std::string Capped(std::string_view s, size_t max_chars, std::string_view whole_in);

// Untrusted text put inside a sentence of the desk's: a bidirectional isolate (U+2068 ... U+2069), so that a
// right-to-left override in it cannot reorder the words around it. Isolate controls inside it are replaced
// by U+FFFD, so it cannot close its isolate early. Block texts and field labels and values are isolated by
// the renderers themselves; Iso is for pieces within a sentence.
std::string Iso(std::string_view untrusted);

// Plain text of what a report holds, for documents (the web pages have their own HTML forms).
std::string FieldTypeName(const v1::FieldValue& v);
std::string GeoText(const v1::GeoPoint& g);
std::string FieldText(const v1::FieldValue& v);
// "2025-08-17 07:00 UTC"; "—" for none.
std::string WhenText(int64_t ms);

}  // namespace dala::desk
