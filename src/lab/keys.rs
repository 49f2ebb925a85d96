//! ssh keys the lab owns: the controller's login key (root on every VM) and each VM's host keys,
//! generated on the controller so they are pinned in a known_hosts file before the VM first
//! boots (no trust on first use).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::LabError;
use super::cmd::Tool;

/// Host key types every VM gets (the set Debian's openssh-server generates).
pub const HOST_KEY_TYPES: [&str; 3] = ["ed25519", "ecdsa", "rsa"];

/// Creates an unencrypted key pair at `path` (and `path.pub`) unless it already exists.
pub async fn ensure_keypair(path: &Path, kind: &str, comment: &str) -> Result<(), LabError> {
    if path.exists() && pub_path(path).exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        super::create_dir_mode(dir, 0o700)?;
    }
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(pub_path(path));
    Tool::new(
        format!("generate {kind} key {}", path.display()),
        "ssh-keygen",
    )
    .args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"])
    .arg(path)
    .run()
    .await?;
    Ok(())
}

/// `key` + ".pub" (keeps dots already in the name, unlike `with_extension`).
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The host keys of VM `name`, created once under `dir` and reused across `lab down`/`up`.
pub async fn ensure_host_keys(dir: &Path, name: &str) -> Result<Vec<PathBuf>, LabError> {
    let mut keys = Vec::new();
    for kind in HOST_KEY_TYPES {
        let path = dir.join(format!("ssh_host_{kind}_key"));
        if !(path.exists() && pub_path(&path).exists()) {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(pub_path(&path));
            super::create_dir_mode(dir, 0o700)?;
            Tool::new(format!("generate {kind} host key for {name}"), "ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    &format!("root@{name}"),
                    "-f",
                ])
                .arg(&path)
                .run()
                .await?;
        }
        keys.push(path);
    }
    Ok(keys)
}

/// One known_hosts line per public key: `name,ip keytype base64` (the comment is dropped).
pub fn known_hosts_lines(name: &str, ip: Ipv4Addr, pubkeys: &[String]) -> Vec<String> {
    pubkeys
        .iter()
        .filter_map(|k| {
            let mut parts = k.split_whitespace();
            let (kind, blob) = (parts.next()?, parts.next()?);
            Some(format!("{name},{ip} {kind} {blob}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names_host_and_address() {
        let lines = known_hosts_lines(
            "lab-server",
            Ipv4Addr::new(198, 19, 0, 10),
            &[
                "ssh-ed25519 AAAAC3Nz root@lab-server\n".into(),
                "garbage".into(),
            ],
        );
        assert_eq!(lines, ["lab-server,198.19.0.10 ssh-ed25519 AAAAC3Nz"]);
    }

    #[test]
    fn pub_path_appends() {
        assert_eq!(
            pub_path(Path::new("/x/ssh_host_rsa_key")),
            PathBuf::from("/x/ssh_host_rsa_key.pub")
        );
        assert_eq!(
            pub_path(Path::new("/x/id.lab")),
            PathBuf::from("/x/id.lab.pub")
        );
    }
}
