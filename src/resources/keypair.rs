//! An ssh key pair generated on the host itself (the private key never leaves it).

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, sh_quote};

#[derive(Debug, Clone)]
pub struct KeyPair {
    /// Private key path; the public key is `<path>.pub`.
    pub path: String,
    /// `ssh-keygen -t` type: rsa, ed25519, dsa.
    pub key_type: String,
    /// `ssh-keygen -b`, for rsa.
    pub bits: Option<u32>,
    pub comment: String,
}

impl KeyPair {
    /// A key pair known only by path: enough to observe it (type and comment matter only
    /// when generating).
    pub fn observer(path: &str) -> KeyPair {
        KeyPair {
            path: path.into(),
            key_type: String::new(),
            bits: None,
            comment: String::new(),
        }
    }

    /// The public key line from an observation or from the converge step's stdout.
    pub fn public_key(text: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix("pub="))
            .map(str::trim)
            .filter(|k| k.starts_with("ssh-") || k.starts_with("ecdsa-"))
            .map(str::to_string)
    }
}

/// Prints `pub=<first line of the quoted public key file>`, read by the shell.
fn print_pub(quoted_pub: &str) -> String {
    format!("l=; read -r l < {quoted_pub} || [ -n \"$l\" ]; echo \"pub=$l\"\n")
}

impl Resource for KeyPair {
    fn id(&self) -> String {
        format!("keypair:{}", self.path)
    }

    fn observe_script(&self) -> String {
        let k = sh_quote(&self.path);
        let pubk = sh_quote(&format!("{}.pub", self.path));
        format!(
            "if [ -f {k} ] && [ -f {pubk} ]; then echo state=present; l=; read -r l < {pubk}; echo \"pub=$l\"; \
             elif [ -f {k} ]; then echo state=private-only; else echo state=absent; fi"
        )
    }

    fn observation_may_wait(&self) -> bool {
        false
    }

    fn observation_in_place(&self) -> bool {
        true
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let k = sh_quote(&self.path);
        let pubk = sh_quote(&format!("{}.pub", self.path));
        match observed.field("state") {
            Some("present") => {
                if Self::public_key(&observed.text).is_some() {
                    Ok(Plan::Ok)
                } else {
                    Err(ResourceError::Invalid {
                        id: self.id(),
                        detail: format!(
                            "{}.pub does not hold an ssh public key; remove both files to regenerate",
                            self.path
                        ),
                    })
                }
            }
            Some("private-only") => Ok(Plan::Change(Change::new(
                "derive missing public key",
                format!(
                    "set -e\numask 022\nssh-keygen -y -f {k} > {pubk}\n{PRINT_PUB}",
                    PRINT_PUB = print_pub(&pubk)
                ),
            ))),
            Some("absent") => {
                let bits = self.bits.map(|b| format!(" -b {b}")).unwrap_or_default();
                // The directory is worked out here and the key read by the shell: a client's
                // first run makes its key pair in the same round trip as its first look, and
                // `dirname` and `head` were two programs of it.
                let dir = std::path::Path::new(&self.path)
                    .parent()
                    .map(|d| d.to_string_lossy().into_owned())
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| ".".into());
                Ok(Plan::Change(Change::new(
                    format!("generate {} key", self.key_type),
                    format!(
                        "set -e\numask 077\nmkdir -p -- {dir}\n\
                         ssh-keygen -q -t {}{bits} -N '' -C {} -f {k} </dev/null >/dev/null\n\
                         chmod 600 {k}\nchmod 644 {pubk}\n{}",
                        sh_quote(&self.key_type),
                        sh_quote(&self.comment),
                        print_pub(&pubk),
                        dir = sh_quote(&dir),
                    ),
                )))
            }
            _ => Err(ResourceError::Observe {
                id: self.id(),
                detail: "no state line".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a snippet locally; it must succeed.
    fn sh(script: &str) -> Observed {
        let o = crate::resources::observe_local(script);
        assert_eq!(o.status, 0, "{script} failed:\n{}", o.text);
        o
    }

    #[test]
    fn generates_once_and_reads_the_public_key() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            netdump_test_support::skip("keypair generation", "ssh-keygen not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let kp = KeyPair {
            path: dir.path().join("sub/id_test").display().to_string(),
            key_type: "ed25519".into(),
            bits: None,
            comment: "netdump-provision:c1".into(),
        };
        let ctx = PlanContext::default();
        let Plan::Change(c) = kp.plan(&sh(&kp.observe_script()), &ctx).unwrap() else {
            panic!()
        };
        let out = sh(&c.script);
        let key = KeyPair::public_key(&out.text).unwrap();
        assert!(key.starts_with("ssh-ed25519 ") && key.ends_with("netdump-provision:c1"));
        let o = sh(&kp.observe_script());
        assert!(matches!(kp.plan(&o, &ctx).unwrap(), Plan::Ok));
        assert_eq!(KeyPair::public_key(&o.text).unwrap(), key);

        std::fs::remove_file(format!("{}.pub", kp.path)).unwrap();
        let Plan::Change(c) = kp.plan(&sh(&kp.observe_script()), &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(c.summary, "derive missing public key");
        let out = sh(&c.script);
        assert_eq!(
            KeyPair::public_key(&out.text)
                .unwrap()
                .split_whitespace()
                .nth(1),
            key.split_whitespace().nth(1)
        );
    }
}
