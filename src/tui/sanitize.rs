//! Data is untrusted: control characters and escape sequences inside values are shown escaped
//! (`\u{1b}`, `\n`), never sent to the terminal.

/// `s` with every control character escaped.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with every control character escaped except line breaks and tabs: for the CLI's plain
/// output, which keeps its lines while no escape sequence from data reaches the terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cuts `s` to `n` characters, marking the cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// An RFC 3339 time as `MM-DD HH:MM:SS` (UTC, as stored).
pub fn short_time(t: &str) -> String {
    match (t.get(5..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h}"),
        _ => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_control_sequences() {
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("x\ny\r"), "x\\ny\\r");
        assert_eq!(clean("usd "), "usd ");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(
            printable("a\u{1b}]0;x\u{7}\nb\tc\r"),
            "a\\u{1b}]0;x\\u{7}\nb\tc\\r"
        );
    }
}
