// DocPdf (report_doc.h): a document laid out by Pango and drawn by cairo's PDF surface, both from Debian.
// Text is set as plain text (pango_layout_set_text), never as Pango markup, so nothing a phone wrote is
// interpreted; attributes (bold, colour) are applied by byte ranges the desk computed.
#include <cairo-pdf.h>
#include <glib.h>
#include <pango/pangocairo.h>

#include <memory>

#include "base/clock.h"
#include "desk/report_doc.h"

namespace dala::desk {
namespace {

constexpr double kPageWidth = 595.276;   // A4, in points
constexpr double kPageHeight = 841.89;
constexpr double kMargin = 56.7;         // 2 cm
constexpr double kFooterGap = 22.0;

struct SurfaceFree {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct CairoFree {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
struct GFree {
  void operator()(void* p) const { g_object_unref(p); }
};
struct FontFree {
  void operator()(PangoFontDescription* f) const { pango_font_description_free(f); }
};
struct AttrsFree {
  void operator()(PangoAttrList* a) const { pango_attr_list_unref(a); }
};
using Layout = std::unique_ptr<PangoLayout, GFree>;
using Font = std::unique_ptr<PangoFontDescription, FontFree>;

cairo_status_t AppendTo(void* closure, const unsigned char* data, unsigned int length) {
  try {  // nothing may be thrown through cairo's C
    static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
    return CAIRO_STATUS_SUCCESS;
  } catch (...) {
    return CAIRO_STATUS_WRITE_ERROR;
  }
}

// Valid UTF-8 without NULs (Pango takes nothing else; anything else becomes U+FFFD), at most
// kMaxBlockChars characters.
std::string Clean(std::string_view s) {
  std::string in = Capped(s, kMaxBlockChars, "the package's files");
  for (char& c : in)
    if (c == '\0') c = '\x1a';  // replaced below: a control character, then U+FFFD
  gchar* valid = g_utf8_make_valid(in.data(), static_cast<gssize>(in.size()));
  std::string out(valid);
  g_free(valid);
  std::string r;
  r.reserve(out.size());
  for (char c : out) {
    if (c == '\x1a') r += "\xEF\xBF\xBD";
    else r.push_back(c);
  }
  return r;
}

struct Style {
  const char* font;
  double before, after, indent;
  double r = 0, g = 0, b = 0;
  bool wrap_anywhere = false;
};

Style StyleOf(BlockKind k) {
  switch (k) {
    case BlockKind::kHeading: return {"DejaVu Sans Bold 13", 14, 5, 0};
    case BlockKind::kSubheading: return {"DejaVu Sans Bold 10.5", 8, 3, 0};
    case BlockKind::kParagraph: return {"DejaVu Sans 9.5", 2, 4, 0};
    case BlockKind::kField: return {"DejaVu Sans 9.5", 0, 1.5, 0};
    case BlockKind::kCheckOk: return {"DejaVu Sans 9.5", 0, 2.5, 12, 0.03, 0.37, 0.03};
    case BlockKind::kCheckFailed: return {"DejaVu Sans Bold 9.5", 0, 2.5, 12, 0.63, 0, 0};
    case BlockKind::kCheckNone: return {"DejaVu Sans 9.5", 0, 2.5, 12, 0.33, 0.33, 0.33};
    case BlockKind::kQuote: return {"DejaVu Sans 9.5", 2, 4, 14};
    case BlockKind::kCode: return {"DejaVu Sans Mono 8.5", 2, 4, 8, 0, 0, 0, true};
  }
  return {"DejaVu Sans 9.5", 0, 0, 0};
}

class Writer {
 public:
  Writer(cairo_t* cr, const Doc& doc, int total_pages) : cr_(cr), doc_(doc), total_(total_pages) {}

  void Title() {
    Draw(Clean(doc_.title), "DejaVu Sans Bold 17", 0, Spans{}, 0, 0, 0, false);
    y_ += 10;
  }

  void Block(const DocBlock& b) {
    Style st = StyleOf(b.kind);
    std::string text;
    size_t bold_end = 0;
    size_t mono_from = std::string::npos;
    switch (b.kind) {
      case BlockKind::kCheckOk: text = "✓ " + Clean(b.text); break;
      case BlockKind::kCheckFailed: text = "✗ " + Clean(b.text); break;
      case BlockKind::kCheckNone: text = "– " + Clean(b.text); break;
      case BlockKind::kField:
        // Label and value each isolated: a right-to-left override in one cannot reorder the other.
        text = Iso(Clean(b.label)) + ": ";
        bold_end = text.size();
        if (b.mono) mono_from = text.size();
        text += Iso(Clean(b.text));
        st.wrap_anywhere = b.mono;
        break;
      default: text = Clean(b.text);
    }
    y_ += st.before;
    // A quote (the narrative) keeps its writer's direction. Everything else is the desk's own words, English,
    // left to right, with what phones wrote isolated inside (a field's label and value each on their own).
    const bool auto_dir = b.kind == BlockKind::kQuote;
    Draw(text, st.font, st.indent, Spans{bold_end, mono_from}, st.r, st.g, st.b, st.wrap_anywhere, auto_dir);
    y_ += st.after;
  }

  void Finish() {
    Footer();
    cairo_show_page(cr_);
  }
  int pages() const { return page_; }

 private:
  struct Spans {
    size_t bold_end = 0;                  // bytes [0, bold_end) bold
    size_t mono_from = std::string::npos;  // bytes [mono_from, end) fixed width, or npos
  };

  void Draw(const std::string& text, const char* font_name, double indent, Spans spans, double r, double g, double b,
            bool wrap_anywhere, bool auto_dir = false) {
    Layout layout(pango_cairo_create_layout(cr_));
    Font font(pango_font_description_from_string(font_name));
    pango_layout_set_font_description(layout.get(), font.get());
    pango_layout_set_width(layout.get(), static_cast<int>((kPageWidth - 2 * kMargin - indent) * PANGO_SCALE));
    pango_layout_set_wrap(layout.get(), wrap_anywhere ? PANGO_WRAP_CHAR : PANGO_WRAP_WORD_CHAR);
    pango_layout_set_auto_dir(layout.get(), auto_dir);
    pango_layout_set_text(layout.get(), text.data(), static_cast<int>(text.size()));
    std::unique_ptr<PangoAttrList, AttrsFree> attrs(pango_attr_list_new());
    if (spans.bold_end > 0) {
      PangoAttribute* a = pango_attr_weight_new(PANGO_WEIGHT_BOLD);
      a->start_index = 0;
      a->end_index = static_cast<guint>(spans.bold_end);
      pango_attr_list_insert(attrs.get(), a);
    }
    if (spans.mono_from != std::string::npos) {
      Font mono(pango_font_description_from_string("DejaVu Sans Mono 8.5"));
      PangoAttribute* a = pango_attr_font_desc_new(mono.get());
      a->start_index = static_cast<guint>(spans.mono_from);
      a->end_index = static_cast<guint>(text.size());
      pango_attr_list_insert(attrs.get(), a);
    }
    pango_layout_set_attributes(layout.get(), attrs.get());
    cairo_set_source_rgb(cr_, r, g, b);
    // Line by line, so that a long text flows onto the next pages.
    PangoLayoutIter* it = pango_layout_get_iter(layout.get());
    do {
      PangoRectangle logical;
      pango_layout_iter_get_line_extents(it, nullptr, &logical);
      const double height = static_cast<double>(logical.height) / PANGO_SCALE;
      const double baseline =
          static_cast<double>(pango_layout_iter_get_baseline(it) - logical.y) / PANGO_SCALE;
      if (y_ + height > kPageHeight - kMargin) {
        NewPage();
        cairo_set_source_rgb(cr_, r, g, b);
      }
      cairo_move_to(cr_, kMargin + indent + static_cast<double>(logical.x) / PANGO_SCALE, y_ + baseline);
      pango_cairo_show_layout_line(cr_, pango_layout_iter_get_line_readonly(it));
      y_ += height;
    } while (pango_layout_iter_next_line(it));
    pango_layout_iter_free(it);
  }

  void Footer() {
    Layout layout(pango_cairo_create_layout(cr_));
    Font font(pango_font_description_from_string("DejaVu Sans 7.5"));
    pango_layout_set_font_description(layout.get(), font.get());
    pango_layout_set_width(layout.get(), static_cast<int>((kPageWidth - 2 * kMargin) * PANGO_SCALE));
    pango_layout_set_ellipsize(layout.get(), PANGO_ELLIPSIZE_MIDDLE);
    pango_layout_set_auto_dir(layout.get(), false);
    const std::string text = Clean(doc_.footer) + (doc_.footer.empty() ? "" : " · ") + "page " +
                             std::to_string(page_) + " of " + std::to_string(total_ > 0 ? total_ : page_);
    pango_layout_set_text(layout.get(), text.data(), static_cast<int>(text.size()));
    cairo_set_source_rgb(cr_, 0.33, 0.33, 0.33);
    cairo_move_to(cr_, kMargin, kPageHeight - kMargin + kFooterGap);
    pango_cairo_show_layout(cr_, layout.get());
  }

  void NewPage() {
    Footer();
    cairo_show_page(cr_);
    ++page_;
    y_ = kMargin;
  }

  cairo_t* cr_;
  const Doc& doc_;
  int total_;
  int page_ = 1;
  double y_ = kMargin;
};

// Draws the document; returns its page count. `total_pages` 0: not yet known (the first pass).
Result<int> Render(const Doc& doc, int64_t created_ms, int total_pages, std::string* out) {
  std::unique_ptr<cairo_surface_t, SurfaceFree> surface(
      cairo_pdf_surface_create_for_stream(AppendTo, out, kPageWidth, kPageHeight));
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS)
    return Status(Code::kInternal, "cannot make a PDF surface");
  const std::string title = Clean(doc.title);
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_TITLE, title.c_str());
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_CREATOR, "Dala desk");
  const std::string date = IsoTime(created_ms).substr(0, 19);  // 2025-08-17T07:00:00
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_CREATE_DATE, date.c_str());
  cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_MOD_DATE, date.c_str());
  std::unique_ptr<cairo_t, CairoFree> cr(cairo_create(surface.get()));
  Writer w(cr.get(), doc, total_pages);
  w.Title();
  for (const DocBlock& b : doc.blocks) w.Block(b);
  w.Finish();
  if (cairo_status(cr.get()) != CAIRO_STATUS_SUCCESS)
    return Status(Code::kInternal, std::string("cannot draw the PDF: ") + cairo_status_to_string(cairo_status(cr.get())));
  cairo_surface_finish(surface.get());
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS)
    return Status(Code::kInternal, std::string("cannot write the PDF: ") +
                                       cairo_status_to_string(cairo_surface_status(surface.get())));
  return w.pages();
}

}  // namespace

Result<std::string> DocPdf(const Doc& doc, int64_t created_ms) {
  // Twice: the first pass counts the pages that "page N of M" names.
  std::string first;
  DALA_ASSIGN_OR_RETURN(int pages, Render(doc, created_ms, 0, &first));
  std::string pdf;
  DALA_ASSIGN_OR_RETURN(int again, Render(doc, created_ms, pages, &pdf));
  if (again != pages) return Status(Code::kInternal, "the PDF's page count changed between its two passes");
  return pdf;
}

}  // namespace dala::desk
