//! Text from other room members, made safe for a terminal.
//!
//! Device ids, member ids, slot ids, transport URLs and rejection reasons are chosen by whoever
//! sent the event. Written raw, an escape sequence in one of them could clear the screen or move
//! the cursor, a CR or LF could start a forged row, and a bidi override could make a row read
//! differently from what it holds. Every such character is written as a visible `\u{…}` escape
//! instead; everything else, other scripts included, stays as sent.

use std::{borrow::Cow, fmt::Write};

/// `text` with every control character (C0, DEL, C1) and every bidi formatting character
/// written as `\u{XX}`; borrowed when there is none.
pub(crate) fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Controls (`\0`–`\x1f`, DEL, `\u{80}`–`\u{9f}`), and the characters that change the direction
/// or joining of what follows: LRM, RLM, ALM, the embeddings and overrides U+202A–U+202E, the
/// isolates U+2066–U+2069, and the line and paragraph separators U+2028, U+2029.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn ordinary_text_is_kept() {
        assert!(matches!(
            safe("DEVICE_1 café 日本"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(safe("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("row\r\nfake"), "row\\u{d}\\u{a}fake");
        assert_eq!(safe("\0\x7f\u{85}"), "\\u{0}\\u{7f}\\u{85}");
        assert_eq!(safe("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(
            safe("\u{2066}\u{2069}\u{200f}"),
            "\\u{2066}\\u{2069}\\u{200f}"
        );
        assert_eq!(safe("\u{2028}"), "\\u{2028}");
    }
}
