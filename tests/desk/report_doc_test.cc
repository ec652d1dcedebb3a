// The verification report's two forms (tools/desk/report_doc.h): HTML that escapes everything and allows
// only its own style, and PDF laid out by Pango over numbered pages. What the PDF says, read back by
// poppler's pdftotext, is checked in tests/desk/desk_web_test.py.
#include "desk/report_doc.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace dala::desk {
namespace {

const std::string kHostile =
    "<script>alert(1)</script><b>bold</b> &amp; <span foreground=\"red\">x</span> \u202eesrever\u202c "
    "شاهد عيان · Задержан у стадиона";

Doc HostileDoc(size_t quote_chars) {
  Doc doc;
  doc.title = "Evidence package: verification report <i>";
  doc.footer = "made by <b>";
  doc.Field("Organisation", kHostile);
  doc.Field("Hash", std::string(64, 'a'), true);
  doc.Add(BlockKind::kHeading, kHostile);
  doc.Check(true, kHostile);
  doc.Check(false, kHostile);
  doc.Add(BlockKind::kCheckNone, kHostile);
  doc.Add(BlockKind::kCode, kHostile);
  doc.Add(BlockKind::kParagraph, std::string("bad bytes \xff\xfe\xc3 and a NUL ") + std::string(1, '\0') + " here");
  std::string quote;
  while (quote.size() < quote_chars) quote += "Долгий рассказ о том дне. ";
  doc.Add(BlockKind::kQuote, quote);
  return doc;
}

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

TEST(ReportDoc, TheHtmlEscapesEverythingAndAllowsOnlyItsOwnStyle) {
  const std::string html = DocHtml(HostileDoc(100));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_EQ(html.find("<span foreground"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp;amp;"), std::string::npos);
  EXPECT_NE(html.find("<bdi>&lt;script&gt;"), std::string::npos) << "untrusted text is isolated for bidi";
  EXPECT_NE(html.find("<title>Evidence package: verification report &lt;i&gt;</title>"), std::string::npos);
  // The policy allows nothing but the one style block in the page, by its hash.
  const size_t open = html.find("<style>") + 7, close = html.find("</style>");
  ASSERT_LT(open, close);
  const std::string css = html.substr(open, close - open);
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(css.data()), css.size());
  char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, h, sizeof h, sodium_base64_VARIANT_ORIGINAL);
  EXPECT_NE(html.find(std::string("content=\"default-src 'none'; style-src 'sha256-") + b64 + "'\""), std::string::npos);
  EXPECT_EQ(Count(html, "<style"), 1u);
}

TEST(ReportDoc, ThePdfTakesAnyTextAndFlowsOverNumberedPages) {
  auto one = DocPdf(HostileDoc(100), 1755414000000);
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->rfind("%PDF-1.", 0), 0u);
  EXPECT_NE(one->find("%%EOF"), std::string::npos);
  EXPECT_NE(one->find("(Dala desk)"), std::string::npos) << "its creator in the metadata";
  EXPECT_NE(one->find("/CreationDate (20250817070000"), std::string::npos) << "its creation date is the package's";
  EXPECT_EQ(Count(*one, "/Type /Page\n") + Count(*one, "/Type /Page "), 1u);
  // A long text flows onto further pages rather than being cut or overflowing one.
  auto many = DocPdf(HostileDoc(60000), 1755414000000);
  ASSERT_TRUE(many.ok()) << many.status().message();
  const size_t pages = Count(*many, "/Type /Page\n") + Count(*many, "/Type /Page ");
  EXPECT_GE(pages, 8u);
  EXPECT_LE(pages, 40u);
}

// The PDF's text as poppler reads it back (tools/dev installs poppler-utils).
std::string PdfText(const std::string& pdf) {
  char path[] = "/tmp/dala-report-doc-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, pdf.data(), pdf.size()), static_cast<ssize_t>(pdf.size()));
  close(fd);
  std::string text;
  FILE* p = popen(("pdftotext -enc UTF-8 " + std::string(path) + " - 2>/dev/null").c_str(), "r");
  EXPECT_NE(p, nullptr);
  char buf[4096];
  for (size_t n; p != nullptr && (n = fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
  EXPECT_EQ(p != nullptr ? pclose(p) : -1, 0) << "pdftotext (poppler-utils) must be installed";
  if (std::getenv("KEEP_PDF") == nullptr) unlink(path);
  else fprintf(stderr, "kept %s\n", path);
  return text;
}

TEST(ReportDoc, ThePdfSaysWhatItWasGivenAsTextNeverAsMarkup) {
  Doc doc;
  doc.title = "Title";
  doc.Field("\u202eplace", "Almaty stadium");
  doc.Check(true, "Attachment (" + Iso("\u202eimage/png") + ", 5 bytes) matched the hash");
  doc.Add(BlockKind::kParagraph, "<b>bold</b> <span foreground=\"red\">x</span> &amp; done");
  auto pdf = DocPdf(doc, 1755414000000);
  ASSERT_TRUE(pdf.ok()) << pdf.status().message();
  const std::string text = PdfText(*pdf);
  EXPECT_NE(text.find("<b>bold</b> <span foreground=\"red\">x</span> &amp; done"), std::string::npos) << text;
  // A right-to-left override reverses only the phone's own words, never the desk's around them.
  EXPECT_NE(text.find("Almaty stadium"), std::string::npos) << text;
  EXPECT_NE(text.find("lp: Almaty stadium"), std::string::npos) << "the label's override stops at the label: " << text;
  EXPECT_NE(text.find(", 5 bytes) matched the hash"), std::string::npos) << text;
  EXPECT_NE(text.find("page 1 of 1"), std::string::npos) << text;
}

TEST(ReportDoc, TheTitleIsBoldAndOnlyHashesAreFixedWidth) {
  Doc doc;
  doc.title = "Evidence package";
  doc.Add(BlockKind::kParagraph, "plain words");
  auto pdf = DocPdf(doc, 1755414000000);
  ASSERT_TRUE(pdf.ok());
  EXPECT_NE(pdf->find("DejaVuSans-Bold"), std::string::npos);
  EXPECT_EQ(pdf->find("DejaVuSansMono"), std::string::npos);
  doc.Field("SHA-256", std::string(64, 'f'), true);
  pdf = DocPdf(doc, 1755414000000);
  ASSERT_TRUE(pdf.ok());
  EXPECT_NE(pdf->find("DejaVuSansMono"), std::string::npos);
}

TEST(ReportDoc, ABlockIsCutAtItsLimitSayingSo) {
  Doc doc;
  doc.title = "Long";
  std::string words;
  while (words.size() < 200000) words += "word ";
  doc.Add(BlockKind::kQuote, words);
  doc.Add(BlockKind::kQuote, std::string(kMaxBlockChars / 2, 'x'));  // one word as long as half the limit
  auto pdf = DocPdf(doc, 1755414000000);
  ASSERT_TRUE(pdf.ok()) << pdf.status().message();
  const std::string text = PdfText(*pdf);
  std::string flat;  // whitespace runs as one space: pdftotext breaks lines where the PDF does
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) flat.push_back(c);
    else if (!flat.empty() && flat.back() != ' ') flat.push_back(' ');
  EXPECT_NE(flat.find("more characters are left out here: the whole text is in the package's files"), std::string::npos);
  EXPECT_EQ(text.find("word word word word word word word word word word word word word word word word word word word word "
                      "word word word word word word word word word word word word word word word word word word word word "
                      "word word word word word word word word word word word word word word word word word word word word "
                      "word word word word word word word word word word word word word word word word word word word word "
                      "word word word word word word word word word word word word word word word word word word word word "),
            std::string::npos) << "pdftotext breaks lines, so no page holds 100 words on one line";
  size_t xs = 0;  // in the lines of x alone
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    if (!line.empty() && line[0] == '\f') line.erase(0, 1);  // a new page
    if (!line.empty() && line.find_first_not_of('x') == std::string::npos) xs += line.size();
    at = end + 1;
  }
  EXPECT_EQ(xs, kMaxBlockChars / 2) << "an unbroken word is wrapped, not dropped";
}

TEST(ReportDoc, IsoIsolatesAndCannotBeClosedFromInside) {
  EXPECT_EQ(Iso("abc"), "\u2068abc\u2069");
  EXPECT_EQ(Iso("a\u2069\u202eb\u2066"), "\u2068a\uFFFD\u202eb\uFFFD\u2069");
}

TEST(ReportDoc, CappedCutsAtACharacterAndSaysWhereTheWholeIs) {
  EXPECT_EQ(Capped("short", 10, "x.json"), "short");
  EXPECT_EQ(Capped("ЖЖЖЖ", 4, "x.json"), "ЖЖЖЖ");
  const std::string cut = Capped("ЖЖЖЖЖЖ", 4, "v1/content.json");
  EXPECT_EQ(cut, "ЖЖЖЖ […] (2 more characters are left out here: the whole text is in v1/content.json)");
}

}  // namespace
}  // namespace dala::desk
