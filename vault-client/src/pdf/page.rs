//! A writer of simple A4 pages: lines of text top-down with wrapping, label–value rows, table
//! rows, rules and stamp boxes. Widths are estimated per character (a CJK character one em, others 0.6):
//! enough to wrap before the margin without shaping twice.

use krilla::Document;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::page::PageSettings;
use krilla::paint::Stroke;
use krilla::text::{Font, TextDirection};

/// A4 in points.
pub const A4: (f32, f32) = (595.0, 842.0);
/// Margin on every side.
pub const MARGIN: f32 = 56.0;

/// One drawing operation, kept until the page is written.
enum Mark {
    Text {
        x: f32,
        y: f32,
        size: f32,
        text: String,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

/// Pages being laid out; `finish` renders them.
pub struct Pages {
    font: Font,
    size: (f32, f32),
    pages: Vec<Vec<Mark>>,
    /// The baseline of the next line on the current page.
    pub y: f32,
    /// Said at the top of a page that continues a section (its heading, "（続き）").
    pub continued: Option<String>,
}

/// Space between a label's column and its value.
const LABEL_GAP: f32 = 8.0;

/// Estimated width of `text` at `size`.
pub fn width(text: &str, size: f32) -> f32 {
    text.chars()
        .map(|c| if c.is_ascii() { 0.6 } else { 1.0 })
        .sum::<f32>()
        * size
}

/// `text` broken into lines no wider than `max` at `size`: Japanese anywhere, Latin words
/// (and hex groups) at the space before them.
pub fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for c in paragraph.chars() {
            let mut candidate = line.clone();
            candidate.push(c);
            if width(&candidate, size) > max && !line.is_empty() {
                // A run of Latin letters, digits and signs (a code, a hex group, a number) is
                // never cut: the line breaks before it, unless it fills the line by itself.
                let word_start = line
                    .char_indices()
                    .rev()
                    .take_while(|(_, w)| w.is_ascii_graphic())
                    .last()
                    .map(|(i, _)| i);
                match word_start {
                    Some(start) if start > 0 && c.is_ascii_graphic() => {
                        let word = line.split_off(start);
                        lines.push(line.trim_end().to_owned());
                        line = word;
                    }
                    _ => lines.push(std::mem::take(&mut line)),
                }
            }
            line.push(c);
        }
        lines.push(line);
    }
    lines
}

impl Pages {
    /// Starts a document of pages `size` (points) in `font`.
    pub fn new(font: Font, size: (f32, f32)) -> Pages {
        Pages {
            font,
            size,
            pages: vec![Vec::new()],
            y: MARGIN,
            continued: None,
        }
    }

    fn current(&mut self) -> &mut Vec<Mark> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Starts a new page (headed by [`Pages::continued`], if set).
    pub fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN;
        if let Some(heading) = self.continued.clone() {
            self.y += 10.0;
            let y = self.y;
            self.text_at(MARGIN, y, 10.0, &format!("{heading}（続き）"));
            self.y += 12.0;
        }
    }

    /// Makes room for `height` more points, on a new page if this one is full.
    pub fn room(&mut self, height: f32) {
        if self.y + height > self.size.1 - MARGIN {
            self.new_page();
        }
    }

    /// Text at (`x`, `y`) (`y` is the baseline, from the top).
    pub fn text_at(&mut self, x: f32, y: f32, size: f32, text: &str) {
        self.current().push(Mark::Text {
            x,
            y,
            size,
            text: text.to_owned(),
        });
    }

    /// A line of `text` centred on the page, then space below it.
    pub fn centred(&mut self, size: f32, text: &str) {
        self.room(size * 1.6);
        self.y += size;
        let x = (self.size.0 - width(text, size)) / 2.0;
        let y = self.y;
        self.text_at(x.max(MARGIN), y, size, text);
        self.y += size * 0.6;
    }

    /// A paragraph from `x`, wrapped at the right margin.
    pub fn paragraph(&mut self, x: f32, size: f32, text: &str) {
        for line in wrap(text, size, self.size.0 - MARGIN - x) {
            self.room(size * 1.5);
            self.y += size * 1.5;
            let y = self.y;
            self.text_at(x, y, size, &line);
        }
    }

    /// A `label` in a column of `label_width`, its `value` wrapped beside it, a rule below.
    pub fn field(&mut self, label: &str, value: &str, size: f32, label_width: f32) {
        let x = MARGIN + label_width;
        // The label wraps within its column, a gap short of the value: never into it.
        let labels = wrap(label, size, label_width - LABEL_GAP);
        let lines = wrap(value, size, self.size.0 - MARGIN - x);
        let rows = lines.len().max(labels.len()).max(1);
        let height = size * 1.6 * rows as f32 + size * 0.6;
        self.room(height);
        let top = self.y;
        for (i, line) in labels.iter().enumerate() {
            self.text_at(MARGIN, top + size * 1.5 + i as f32 * size * 1.6, size, line);
        }
        for (i, line) in lines.iter().enumerate() {
            self.text_at(x, top + size * 1.5 + i as f32 * size * 1.6, size, line);
        }
        self.y = top + height;
        let y = self.y;
        let right = self.size.0 - MARGIN;
        self.rule(MARGIN, y, right, y);
    }

    /// One row of a table: each cell wrapped in its column (`widths`, left to right from the
    /// margin), the row kept on one page, a rule below.
    pub fn table_row(&mut self, widths: &[f32], cells: &[&str], size: f32) {
        let columns: Vec<Vec<String>> = widths
            .iter()
            .zip(cells)
            .map(|(w, cell)| wrap(cell, size, w - LABEL_GAP / 2.0))
            .collect();
        let rows = columns.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let height = size * 1.5 * rows as f32 + size * 0.6;
        self.room(height);
        let top = self.y;
        let mut x = MARGIN;
        for (w, lines) in widths.iter().zip(&columns) {
            for (i, line) in lines.iter().enumerate() {
                self.text_at(x, top + size * 1.4 + i as f32 * size * 1.5, size, line);
            }
            x += w;
        }
        self.y = top + height;
        let y = self.y;
        let right = self.size.0 - MARGIN;
        self.rule(MARGIN, y, right, y);
    }

    /// A straight line.
    pub fn rule(&mut self, x1: f32, y1: f32, x2: f32, y2: f32) {
        self.current().push(Mark::Line { x1, y1, x2, y2 });
    }

    /// A box (for a seal, 印).
    pub fn boxed(&mut self, x: f32, y: f32, w: f32, h: f32) {
        self.current().push(Mark::Rect { x, y, w, h });
    }

    /// Boxes for the seals of who checked and who approved (確認印・承認印), at the right of
    /// the next 80 points, `note` at the left of their top line.
    pub fn stamp_boxes(&mut self, note: &str) {
        self.room(90.0);
        let top = self.y;
        let right = self.size.0 - MARGIN;
        for (i, label) in ["承認", "確認"].iter().enumerate() {
            let x = right - (i as f32 + 1.0) * 80.0;
            self.boxed(x, top, 70.0, 18.0);
            self.boxed(x, top + 18.0, 70.0, 62.0);
            self.text_at(x + 24.0, top + 13.0, 9.5, label);
        }
        self.text_at(MARGIN, top + 13.0, 9.5, note);
        self.y = top + 84.0;
    }

    /// Vertical space.
    pub fn skip(&mut self, points: f32) {
        self.y += points;
    }

    /// Renders the pages with `title` in the document's metadata.
    pub fn finish(self, title: &str) -> Result<Vec<u8>, String> {
        let mut document = Document::new();
        document.set_metadata(
            krilla::metadata::Metadata::new()
                .title(title.to_owned())
                .language("ja".to_owned())
                .creator("MyNumber Locker vault-client".to_owned()),
        );
        let count = self.pages.len();
        for (number, marks) in self.pages.into_iter().enumerate() {
            let settings =
                PageSettings::from_wh(self.size.0, self.size.1).ok_or("bad page size")?;
            let mut page = document.start_page_with(settings);
            let mut surface = page.surface();
            for mark in &marks {
                match mark {
                    Mark::Text { x, y, size, text } => surface.draw_text(
                        Point::from_xy(*x, *y),
                        self.font.clone(),
                        *size,
                        text,
                        false,
                        TextDirection::Auto,
                    ),
                    Mark::Line { x1, y1, x2, y2 } => {
                        let mut path = PathBuilder::new();
                        path.move_to(*x1, *y1);
                        path.line_to(*x2, *y2);
                        if let Some(path) = path.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke {
                                width: 0.5,
                                ..Stroke::default()
                            }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                            surface.set_fill(Some(krilla::paint::Fill::default()));
                        }
                    }
                    Mark::Rect { x, y, w, h } => {
                        let mut path = PathBuilder::new();
                        if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                            path.push_rect(rect);
                        }
                        if let Some(path) = path.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke {
                                width: 0.8,
                                ..Stroke::default()
                            }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                            surface.set_fill(Some(krilla::paint::Fill::default()));
                        }
                    }
                }
            }
            // Page numbers at the foot, for a filed copy.
            if count > 1 {
                let label = format!("{} / {}", number + 1, count);
                let x = (self.size.0 - width(&label, 8.0)) / 2.0;
                surface.draw_text(
                    Point::from_xy(x, self.size.1 - MARGIN / 2.0),
                    self.font.clone(),
                    8.0,
                    &label,
                    false,
                    TextDirection::Auto,
                );
            }
            surface.finish();
            page.finish();
        }
        document
            .finish()
            .map_err(|e| format!("cannot write the PDF: {e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_character_and_the_width() {
        let text = "削除方法: 暗号文、ラップされたデータ鍵及びブラインドインデックスを削除した";
        let lines = wrap(text, 10.0, 120.0);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| width(l, 10.0) <= 120.0), "{lines:?}");
        assert_eq!(lines.concat(), text);
        let hex = "a4bbb185 4afda938 1771a110 4d99bcf9 5d46de4b d243cd19";
        let lines = wrap(hex, 10.0, 200.0);
        assert!(
            lines.iter().all(|l| l.split(' ').all(|g| g.len() == 8)),
            "{lines:?}"
        );
        assert_eq!(lines.join(" "), hex);
    }
}
