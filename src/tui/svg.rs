//! A rendered screen as an SVG image in the theme's colours (for postmortems and the README):
//! one `<text>` run per stretch of cells with the same style, on a grid of rectangles.

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use super::theme::Theme;

const CW: f64 = 8.4;
const CH: f64 = 17.0;

fn hex(c: Color, fallback: Color) -> String {
    match c {
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Reset => hex(fallback, Color::Rgb(0, 0, 0)),
        Color::Black => "#000000".into(),
        Color::Red => "#cd3131".into(),
        Color::Green => "#0dbc79".into(),
        Color::Yellow => "#e5e510".into(),
        Color::Blue => "#2472c8".into(),
        Color::Magenta => "#bc3fbc".into(),
        Color::Cyan => "#11a8cd".into(),
        Color::Gray => "#e5e5e5".into(),
        Color::DarkGray => "#666666".into(),
        Color::LightRed => "#f14c4c".into(),
        Color::LightGreen => "#23d18b".into(),
        Color::LightYellow => "#f5f543".into(),
        Color::LightBlue => "#3b8eea".into(),
        Color::LightMagenta => "#d670d6".into(),
        Color::LightCyan => "#29b8db".into(),
        Color::White => "#ffffff".into(),
        Color::Indexed(i) => format!("#{0:02x}{0:02x}{0:02x}", i),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Converts a buffer to SVG.
pub fn buffer_to_svg(buf: &Buffer, theme: &Theme) -> String {
    let area = buf.area;
    let (w, h) = (area.width as f64 * CW, area.height as f64 * CH);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"14\">\n<rect width=\"100%\" height=\"100%\" fill=\"{}\"/>\n",
        hex(theme.bg, theme.bg)
    );
    for y in 0..area.height {
        let mut x = 0;
        while x < area.width {
            let cell = buf
                .cell((area.x + x, area.y + y))
                .expect("inside the buffer");
            let (fg, bg, m) = (cell.fg, cell.bg, cell.modifier);
            let start = x;
            let mut text = String::new();
            while x < area.width {
                let c = buf
                    .cell((area.x + x, area.y + y))
                    .expect("inside the buffer");
                if c.fg != fg || c.bg != bg || c.modifier != m {
                    break;
                }
                text.push_str(c.symbol());
                x += 1;
            }
            let (px, py) = (start as f64 * CW, y as f64 * CH);
            let width = (x - start) as f64 * CW;
            let bgc = hex(bg, theme.bg);
            if bgc != hex(theme.bg, theme.bg) {
                out.push_str(&format!("<rect x=\"{px:.1}\" y=\"{py:.1}\" width=\"{width:.1}\" height=\"{CH}\" fill=\"{bgc}\"/>\n"));
            }
            if !text.trim().is_empty() {
                let weight = if m.contains(Modifier::BOLD) {
                    " font-weight=\"bold\""
                } else {
                    ""
                };
                let deco = if m.contains(Modifier::UNDERLINED) {
                    " text-decoration=\"underline\""
                } else {
                    ""
                };
                out.push_str(&format!(
                    "<text x=\"{px:.1}\" y=\"{:.1}\" fill=\"{}\" xml:space=\"preserve\" textLength=\"{width:.1}\" lengthAdjust=\"spacingAndGlyphs\"{weight}{deco}>{}</text>\n",
                    py + CH * 0.78,
                    hex(fg, theme.fg),
                    esc(&text)
                ));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
