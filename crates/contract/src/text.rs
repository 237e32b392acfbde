//! Text fit for a log line or a message, for every role: request values escaped and
//! cut ([`Escaped`], [`escape_invisible`]), error chains on one line ([`chain_line`],
//! [`root_cause_line`]). Pure: no I/O.

/// The one walker of error chains: `e` and its sources, outermost first.
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error and its causes on one line (`a: b: c`), each text once (layers often
/// repeat their source's text), without any debug dump.
pub fn chain_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for text in causes(e).map(|c| c.to_string()) {
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    one_line(&parts.join(": "))
}

/// The innermost cause on one line, cut at 200 characters: what a person needs,
/// without a library's internals.
pub fn root_cause_line(e: &(dyn std::error::Error + 'static)) -> String {
    let text = one_line(&causes(e).last().map(|c| c.to_string()).unwrap_or_default());
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Control characters and invisible ones (zero-width, bidi overrides, line and
/// paragraph separators) written as escapes; everything else, backslashes included, as
/// it is. For whole messages that quote request values: a value cannot forge a line or
/// reorder what a terminal shows.
pub fn escape_invisible(s: &str) -> String {
    s.chars()
        .map(|ch| {
            if is_invisible(ch) {
                ch.escape_default().to_string()
            } else {
                ch.to_string()
            }
        })
        .collect()
}

fn is_invisible(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A string that came from a request (a pod or namespace name, an annotation key), fit
/// for a log line or a message: control and bidi-override characters are escaped
/// (`\n`, `\u{1b}`), so a name cannot forge a line or recolour a terminal, and only
/// the first 200 characters are kept. The API server validates names only after the
/// mutating webhooks have run, so a review can carry anything.
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        const SHOWN: usize = 200;
        for (i, ch) in self.0.chars().enumerate() {
            if i == SHOWN {
                return write!(f, "…({} bytes)", self.0.len());
            }
            if is_invisible(ch) || ch == '\\' {
                write!(f, "{}", ch.escape_default())?;
            } else {
                f.write_char(ch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_are_escaped_and_cut() {
        let forged = "web\n2026-01-01T00:00:00Z INFO injected namespace=kube-system pod=\u{1b}[2Kx";
        let shown = Escaped(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with("web\\n2026"), "{shown}");
        assert!(shown.contains("\\u{1b}"), "{shown}");
        assert_eq!(Escaped("a\\b").to_string(), "a\\\\b");
        assert_eq!(Escaped("\u{202e}x").to_string(), "\\u{202e}x");
        assert_eq!(Escaped("a\u{2028}b").to_string(), "a\\u{2028}b");
        let long = "n".repeat(1 << 20);
        let shown = Escaped(&long).to_string();
        assert!(
            shown.len() < 300 && shown.ends_with("…(1048576 bytes)"),
            "{}",
            shown.len()
        );
        assert_eq!(Escaped("prod-eu").to_string(), "prod-eu");
    }
}
