//! Untrusted text made safe to quote in errors and logs. Below every other module (the storage
//! layer quotes server answers with it, the audit line client values).
#![forbid(unsafe_code)]

/// Untrusted or admin text reduced to printable ASCII (anything else becomes `?`) and cut at
/// `max` characters: for values quoted in errors and logs (module arguments, who ran a command,
/// an etcd server's message).
pub fn ascii_printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
