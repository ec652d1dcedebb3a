// The verification report's two forms (tools/desk/report_doc.h): HTML that escapes everything and allows
// only its own style, and PDF laid out by Pango over numbered pages. What the PDF says, read back by
// poppler's pdftotext, is checked in tests/desk/desk_web_test.py.
#include "desk/report_doc.h"

#include <gtest/gtest.h>
#include <sodium.h>

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

TEST(ReportDoc, CappedCutsAtACharacterAndSaysWhereTheWholeIs) {
  EXPECT_EQ(Capped("short", 10, "x.json"), "short");
  EXPECT_EQ(Capped("ЖЖЖЖ", 4, "x.json"), "ЖЖЖЖ");
  const std::string cut = Capped("ЖЖЖЖЖЖ", 4, "v1/content.json");
  EXPECT_EQ(cut, "ЖЖЖЖ […] (2 more characters are left out here: the whole text is in v1/content.json)");
}

}  // namespace
}  // namespace dala::desk
