//! A system user (and its primary group) with home, shell and password.

use rand::RngExt;
use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

use super::{Change, Observed, Plan, PlanContext, Resource, ResourceError, sh_quote};
use crate::secret::Secret;

/// Where the `netdump` user's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// `netdump_password_hash`: a crypt(3) string, set as is.
    Hash(Secret),
    /// `--password-file` / `NETDUMP_PASSWORD`: hashed locally with SHA-512 crypt; the current
    /// hash on the server is verified against it first so re-runs stay idempotent.
    Plain(Secret),
    /// No password managed (the account stays locked for password logins).
    Unset,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// Preferred uid (and gid), used only when free.
    pub uid: Option<u32>,
    pub home: String,
    pub shell: String,
    pub comment: String,
    pub password: PasswordSpec,
}

/// SHA-512 crypt of `password` with a fresh random salt.
pub fn sha512_crypt(password: &Secret) -> Result<Secret, String> {
    // 12 random bytes; the crate encodes them as a 16-character crypt salt.
    let mut rng = rand::rng();
    let salt: Vec<u8> = (0..12).map(|_| rng.random::<u8>()).collect();
    ShaCrypt::SHA512
        .hash_password_with_salt(password.expose().as_bytes(), &salt)
        .map(|h| Secret::new(h.as_str()))
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches the crypt `hash` (SHA-256/512 crypt only).
pub fn verify(password: &Secret, hash: &str) -> bool {
    (hash.starts_with("$6$") || hash.starts_with("$5$"))
        && ShaCrypt::default()
            .verify_password(password.expose().as_bytes(), hash)
            .is_ok()
}

impl User {
    /// The password hash to set, or `None` when the current one is right.
    fn password_change(&self, current: &str) -> Result<Option<Secret>, ResourceError> {
        match &self.password {
            PasswordSpec::Unset => Ok(None),
            PasswordSpec::Hash(h) => Ok((h.expose() != current).then(|| h.clone())),
            PasswordSpec::Plain(p) => {
                if verify(p, current) {
                    Ok(None)
                } else {
                    sha512_crypt(p)
                        .map(Some)
                        .map_err(|detail| ResourceError::Invalid {
                            id: self.id(),
                            detail,
                        })
                }
            }
        }
    }
}

impl Resource for User {
    fn id(&self) -> String {
        format!("user:{}", self.name)
    }

    fn observe_script(&self) -> String {
        let n = sh_quote(&self.name);
        let uid = self.uid.map(|u| u.to_string()).unwrap_or_default();
        format!(
            "pw=$(getent passwd {n}); echo \"passwd=$pw\"\n\
             gr=$(getent group {n}); echo \"group=$gr\"\n\
             if [ -n '{uid}' ] && [ -z \"$pw\" ]; then o=$(getent passwd {uid}); echo \"uidowner=${{o%%:*}}\"; fi\n\
             if [ -n '{uid}' ] && [ -z \"$gr\" ]; then o=$(getent group {uid}); echo \"gidowner=${{o%%:*}}\"; fi\n\
             if [ -r /etc/shadow ]; then h=; \
               while IFS=: read -r u p x; do if [ \"$u\" = {n} ]; then h=$p; break; fi; done < /etc/shadow; \
               echo \"shadow=$h\"; \
             else echo shadow-unreadable=1; fi"
        )
    }

    fn plan(&self, observed: &Observed, _ctx: &PlanContext) -> Result<Plan, ResourceError> {
        let n = sh_quote(&self.name);
        let passwd = observed.field("passwd").unwrap_or("");
        let group = observed.field("group").unwrap_or("");
        let uid_free = observed.field("uidowner").is_some_and(str::is_empty);
        let gid_free = observed.field("gidowner").is_some_and(str::is_empty);
        let mut steps = Vec::new();
        let mut summary = Vec::new();

        if group.is_empty() {
            let gid = match self.uid {
                Some(g) if gid_free => format!("-g {g} "),
                _ => String::new(),
            };
            steps.push(format!("groupadd -r {gid}{n}"));
            summary.push("create group".to_string());
        }
        if passwd.is_empty() {
            let uid = match self.uid {
                Some(u) if uid_free => format!("-u {u} "),
                _ => String::new(),
            };
            steps.push(format!(
                // `-p '*'`: no password login, but not "locked" ('!'), which sshd without PAM
                // treats as a reason to refuse even key logins.
                "useradd -r {uid}-g {n} -d {} -M -s {} -c {} -p '*' {n}",
                sh_quote(&self.home),
                sh_quote(&self.shell),
                sh_quote(&self.comment)
            ));
            summary.push("create user".to_string());
        } else {
            let f: Vec<&str> = passwd.split(':').collect();
            if f.len() < 7 {
                return Err(ResourceError::Observe {
                    id: self.id(),
                    detail: "getent passwd returned a malformed entry".into(),
                });
            }
            if f[5] != self.home || f[6] != self.shell {
                steps.push(format!(
                    "usermod -d {} -s {} {n}",
                    sh_quote(&self.home),
                    sh_quote(&self.shell)
                ));
                summary.push(format!(
                    "home/shell {}:{} -> {}:{}",
                    f[5], f[6], self.home, self.shell
                ));
            }
        }

        let mut stdin = None;
        if !matches!(self.password, PasswordSpec::Unset) {
            if observed.field("shadow-unreadable").is_some() {
                return Err(ResourceError::Invalid {
                    id: self.id(),
                    detail: "cannot read /etc/shadow to compare the password; connect as root or set ansible_become".into(),
                });
            }
            let current = if passwd.is_empty() {
                ""
            } else {
                observed.field("shadow").unwrap_or("")
            };
            if let Some(hash) = self.password_change(current)? {
                steps.push("chpasswd -e".to_string());
                summary.push("password (masked)".to_string());
                stdin = Some(format!("{}:{}\n", self.name, hash.expose()).into_bytes());
            }
        }

        if steps.is_empty() {
            return Ok(Plan::Ok);
        }
        let script = format!("set -e\n{}\n", steps.join("\n"));
        let mut change = Change::new(summary.join(", "), script);
        if let Some(s) = stdin {
            change = change.with_stdin(s);
        }
        Ok(Plan::Change(change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(pw: PasswordSpec) -> User {
        User {
            name: "netdump".into(),
            uid: Some(34),
            home: "/var/crash".into(),
            shell: "/bin/bash".into(),
            comment: "Network Crash Dump user".into(),
            password: pw,
        }
    }

    fn obs(text: &str) -> Observed {
        Observed {
            text: text.into(),
            status: 0,
        }
    }

    #[test]
    fn hash_verifies_and_matches_openssl() {
        let pw = Secret::new("s3cret pass");
        let h = sha512_crypt(&pw).unwrap();
        assert!(h.expose().starts_with("$6$"));
        assert!(verify(&pw, h.expose()));
        assert!(!verify(&Secret::new("other"), h.expose()));
        // Cross-check with an independent implementation when available.
        // `$6$rounds=5000$SALT$HASH`: rounds=5000 is glibc's default, so the plain form agrees.
        let parts: Vec<&str> = h.expose().split('$').collect();
        assert_eq!(parts[2], "rounds=5000");
        let salt = parts[3].to_string();
        if let Ok(out) = std::process::Command::new("openssl")
            .args(["passwd", "-6", "-salt", &salt, "-stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"s3cret pass")?;
                c.wait_with_output()
            })
        {
            let theirs = String::from_utf8(out.stdout).unwrap();
            assert_eq!(theirs.trim(), format!("$6${}${}", parts[3], parts[4]));
        }
    }

    #[test]
    fn creates_user_with_preferred_uid_when_free() {
        let u = user(PasswordSpec::Hash(Secret::new("$6$abc$def")));
        let Plan::Change(c) = u
            .plan(
                &obs("passwd=\ngroup=\nuidowner=\ngidowner=\nshadow=\n"),
                &PlanContext::default(),
            )
            .unwrap()
        else {
            panic!()
        };
        assert!(c.script.contains("groupadd -r -g 34 'netdump'"));
        assert!(
            c.script
                .contains("useradd -r -u 34 -g 'netdump' -d '/var/crash'")
        );
        assert!(c.script.contains("chpasswd -e"));
        assert!(
            !c.script.contains("$6$abc"),
            "hash must travel on stdin, not in the script"
        );
        assert_eq!(c.stdin.as_deref().unwrap(), b"netdump:$6$abc$def\n");
        assert!(!format!("{c:?}").contains("$6$abc"));
        assert!(c.summary.contains("masked"));
    }

    #[test]
    fn taken_uid_is_not_forced() {
        let u = user(PasswordSpec::Unset);
        let Plan::Change(c) = u
            .plan(
                &obs("passwd=\ngroup=\nuidowner=games\ngidowner=games\nshadow=\n"),
                &PlanContext::default(),
            )
            .unwrap()
        else {
            panic!()
        };
        assert!(!c.script.contains("-u 34") && !c.script.contains("-g 34"));
    }

    #[test]
    fn idempotent_with_plaintext_password() {
        let pw = Secret::new("pw");
        let h = sha512_crypt(&pw).unwrap();
        let u = user(PasswordSpec::Plain(pw));
        let text = format!(
            "passwd=netdump:x:34:34:Network Crash Dump user:/var/crash:/bin/bash\ngroup=netdump:x:34:\nuidowner=netdump\ngidowner=netdump\nshadow={}\n",
            h.expose()
        );
        assert!(matches!(
            u.plan(&obs(&text), &PlanContext::default()).unwrap(),
            Plan::Ok
        ));
        let text2 = text.replace(h.expose(), "!");
        let Plan::Change(c) = u.plan(&obs(&text2), &PlanContext::default()).unwrap() else {
            panic!()
        };
        assert_eq!(c.summary, "password (masked)");
    }

    #[test]
    fn home_drift_is_fixed_and_unreadable_shadow_is_an_error() {
        let u = user(PasswordSpec::Unset);
        let text = "passwd=netdump:x:34:34::/home/netdump:/bin/sh\ngroup=netdump:x:34:\nshadow=!\n";
        let Plan::Change(c) = u.plan(&obs(text), &PlanContext::default()).unwrap() else {
            panic!()
        };
        assert!(c.script.contains("usermod -d '/var/crash' -s '/bin/bash'"));
        let u = user(PasswordSpec::Hash(Secret::new("$6$x$y")));
        let e = u
            .plan(
                &obs(
                    "passwd=netdump:x:34:34::/var/crash:/bin/bash\ngroup=g\nshadow-unreadable=1\n",
                ),
                &PlanContext::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("ansible_become"));
    }
}
