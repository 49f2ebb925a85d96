//! One remote script observes every resource of a host; its output is split back per resource.

use super::Observed;

/// A fresh random marker for one batched script.
pub fn nonce() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// Builds the batched observation script. Each section is delimited by marker lines carrying a
/// per-run nonce, so resource output can never forge a boundary.
pub fn observe_script(snippets: &[String], nonce: &str) -> String {
    let mut s = String::from("exec 2>&1\n");
    for (i, snippet) in snippets.iter().enumerate() {
        s.push_str(&format!(
            "printf '\\n@@NDP-{nonce} {i} begin\\n'\n( {snippet}\n)\nprintf '\\n@@NDP-{nonce} {i} end %s\\n' \"$?\"\n"
        ));
    }
    s
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the observation output of section {section} is incomplete (the remote script was cut short?)"
)]
pub struct SplitError {
    pub section: usize,
}

/// What a script printed before its first batched section (e.g. the facts probe's lines).
pub fn preamble(output: &str) -> &str {
    output.split("\n@@NDP-").next().unwrap_or("")
}

/// Splits the batched output into `count` observations, in order.
pub fn split(output: &str, nonce: &str, count: usize) -> Result<Vec<Observed>, SplitError> {
    let mut result = Vec::with_capacity(count);
    let mut rest = output;
    for i in 0..count {
        let begin = format!("\n@@NDP-{nonce} {i} begin\n");
        let end_prefix = format!("\n@@NDP-{nonce} {i} end ");
        let b = rest.find(&begin).ok_or(SplitError { section: i })?;
        let body_start = b + begin.len();
        let e = rest[body_start..]
            .find(&end_prefix)
            .ok_or(SplitError { section: i })?
            + body_start;
        let text = &rest[body_start..e];
        let after = &rest[e + end_prefix.len()..];
        let line_end = after.find('\n').ok_or(SplitError { section: i })?;
        let status: i32 = after[..line_end]
            .trim()
            .parse()
            .map_err(|_| SplitError { section: i })?;
        result.push(Observed {
            text: text.to_string(),
            status,
        });
        rest = &after[line_end..];
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn batch_round_trips_through_a_real_shell() {
        let snippets = vec![
            "echo type=file; echo owner=root".to_string(),
            "echo oops >&2; exit 3".to_string(),
            "printf 'no newline'".to_string(),
            "true".to_string(),
        ];
        let out = run_sh(&observe_script(&snippets, "abc123"));
        let obs = split(&out, "abc123", 4).unwrap();
        assert_eq!(preamble(&format!("facts=1\n{out}")), "facts=1\n");
        assert_eq!(obs[0].text, "type=file\nowner=root\n");
        assert_eq!(obs[0].status, 0);
        assert_eq!(obs[1].text, "oops\n");
        assert_eq!(obs[1].status, 3);
        assert_eq!(obs[2].text, "no newline");
        assert_eq!(obs[3].text, "");
    }

    #[test]
    fn forged_markers_with_another_nonce_do_not_split() {
        let snippets = vec![
            "echo '@@NDP-evil 1 begin'".to_string(),
            "echo two".to_string(),
        ];
        let out = run_sh(&observe_script(&snippets, "n0nce"));
        let obs = split(&out, "n0nce", 2).unwrap();
        assert_eq!(obs[0].text, "@@NDP-evil 1 begin\n");
        assert_eq!(obs[1].text, "two\n");
    }

    #[test]
    fn truncated_output_is_an_error_not_a_panic() {
        let snippets = vec!["echo a".to_string(), "echo b".to_string()];
        let out = run_sh(&observe_script(&snippets, "x"));
        let cut = &out[..out.len() - 10];
        assert_eq!(split(cut, "x", 2), Err(SplitError { section: 1 }));
        assert!(split("", "x", 1).is_err());
    }
}
