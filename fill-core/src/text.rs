//! Text from outside, made safe to print: names from catalogs, configs and peers reach
//! terminals and logs, where a control character (ESC, a newline, a C1 control such as
//! CSI) or a bidirectional override could forge or hide output.

use std::fmt;

/// A name in the fleet (a partner, site, serial, region, station): 1 to 64 of ASCII
/// letters, digits, `-`, `_`, `.`.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `c` reorders text when displayed (Unicode's bidirectional controls).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` must not reach a terminal raw: a control character (C0, DEL, C1) or a
/// bidirectional control.
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Displays a string with control and bidirectional characters escaped as `\u{..}` (and
/// `\n`, `\t`, `\r` as such); everything else as is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    /// Honours width and alignment (`{:<14}`), as `str` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(is_unprintable) {
            return f.pad(self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for c in self.0.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_unprintable(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        f.pad(&out)
    }
}

/// [`Escaped`] as a string.
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(escaped("plain/name é.mp4"), "plain/name é.mp4");
        assert_eq!(escaped("a\0b"), "a\\u{0}b");
        assert_eq!(escaped("\x1b[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(escaped("two\nlines"), "two\\nlines");
        assert_eq!(escaped("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escaped("evil\u{202e}4pm.exe"), "evil\\u{202e}4pm.exe");
        assert_eq!(format!("{:<6}|", Escaped("ab")), "ab    |");
        assert_eq!(format!("{:<8}|", Escaped("a\u{1b}")), "a\\u{1b} |");
    }
}
