//! Unified diffs for `--diff`, with masking of secret content.

use similar::TextDiff;

/// A unified diff between the current and the desired text of `path`.
pub fn unified(path: &str, old: &str, new: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (current)"), &format!("{path} (desired)"))
        .to_string()
}

/// The diff shown for content that must not be revealed.
pub fn masked(path: &str) -> String {
    format!("--- {path} (current)\n+++ {path} (desired)\n@@ content masked: secret @@\n")
}

/// The diff shown for content that is not text (or too large to show).
pub fn binary(path: &str, old_hash: Option<&str>, new_hash: &str) -> String {
    format!(
        "--- {path} (current{})\n+++ {path} (desired sha256 {new_hash})\n@@ binary content differs @@\n",
        old_hash.map(|h| format!(" sha256 {h}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_shows_changed_lines() {
        let d = unified("/etc/x", "a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("--- /etc/x (current)"));
        assert!(d.contains("-b\n"));
        assert!(d.contains("+B\n"));
    }

    #[test]
    fn masked_diff_reveals_nothing() {
        let d = masked("/etc/shadow");
        assert!(d.contains("masked"));
    }
}
