//! Callers who ask to stay anonymous (RFC 3323, 3325): how the PBX recognises them and scrubs what
//! would name them on the callee's leg.

use super::dialog;

/// How an anonymous caller is shown to the callee.
pub(crate) const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

/// Whether the caller asks to hide its identity: `Privacy: id` or `user` (RFC 3323, 3325), or an
/// anonymous From (RFC 3261 §8.1.1.3).
pub(crate) fn wants_privacy(headers: &rsip::Headers) -> bool {
    let privacy = pbx_sip::codec::header_values(headers, "Privacy")
        .flat_map(|v| v.split(';'))
        .any(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "id" | "user"));
    let from = dialog::first(headers, "From").unwrap_or("");
    let uri = dialog::uri_of(from).to_ascii_lowercase();
    privacy || uri.starts_with("sip:anonymous@") || uri.starts_with("sips:anonymous@")
}

/// A display name safe to put between quotes in a From header: no controls, quotes or backslashes,
/// at most 64 characters; the number when nothing is left.
pub(crate) fn display_name(name: &str, number: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(64)
        .collect();
    if clean.is_empty() {
        number.to_owned()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_cannot_break_the_header() {
        assert_eq!(display_name("Re\"cep\\tion\r\n", "1001"), "Reception");
        assert_eq!(display_name("\"\"", "1001"), "1001");
        assert_eq!(display_name(&"x".repeat(100), "1").len(), 64);
    }
}
