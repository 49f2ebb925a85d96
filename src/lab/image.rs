//! The lab's base root filesystem: built once with debootstrap from the recipe in
//! `image-recipe.sh`, cached outside the repository under `<cache>/<sha256 of the recipe>/`, so
//! it is rebuilt only when the recipe changes.
//!
//! Cache layout: `rootfs/` (the tree VM disks are made from), `vmlinuz` and `initrd.img` (copied
//! out of `rootfs/boot` for qemu's `-kernel`/`-initrd`), `build.log`, and `complete` (written
//! last; a directory without it is a failed or interrupted build and is redone).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::LabError;
use super::cmd::Tool;

/// The recipe script; its hash keys the cache.
pub const RECIPE: &str = include_str!("image-recipe.sh");

/// Used when no Debian mirror can be read from the apt sources.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A built, cached image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

pub fn recipe_hash() -> String {
    let digest = Sha256::digest(RECIPE.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl BaseImage {
    pub fn at(cache: &Path) -> BaseImage {
        let dir = cache.join(recipe_hash());
        BaseImage {
            rootfs: dir.join("rootfs"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            dir,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.dir.join("complete").is_file()
            && self.rootfs.is_dir()
            && self.kernel.is_file()
            && self.initrd.is_file()
    }
}

/// The Debian mirror apt uses here: the first `deb` source for a non-security suite, from
/// one-line `.list` files or deb822 `.sources` files (pure; `files` are (name, content)).
pub fn mirror_from_apt_sources(files: &[(String, String)]) -> Option<String> {
    for (name, content) in files {
        if name.ends_with(".sources") {
            for stanza in content.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_string())
                    })
                };
                let is_deb =
                    field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
                let enabled = field("Enabled").is_none_or(|e| e != "no");
                let suites = field("Suites").unwrap_or_default();
                let uri = field("URIs").and_then(|u| {
                    u.split_whitespace()
                        .find(|u| u.starts_with("http"))
                        .map(str::to_string)
                });
                let wanted = suites.split_whitespace().any(|s| !s.contains("security"));
                if let (true, Some(uri)) = (is_deb && enabled && wanted, uri) {
                    return Some(uri);
                }
            }
        } else {
            for line in content.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                let Some(rest) = line.strip_prefix("deb ") else {
                    continue;
                };
                // Drop the `[option=value ...]` block; then come the URI and the suite.
                let rest = match rest.trim_start().strip_prefix('[') {
                    Some(opts) => opts.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                let mut words = rest.split_whitespace();
                let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
                    continue;
                };
                if uri.starts_with("http") && !suite.contains("security") {
                    return Some(uri.to_string());
                }
            }
        }
    }
    None
}

/// Reads /etc/apt/sources.list and /etc/apt/sources.list.d/* and picks the mirror.
pub fn host_mirror() -> String {
    let mut files = Vec::new();
    if let Ok(c) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), c));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if let Ok(c) = std::fs::read_to_string(&p) {
                files.push((p.to_string_lossy().into_owned(), c));
            }
        }
    }
    mirror_from_apt_sources(&files).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// Returns the cached image, building it first when the recipe changed or no build finished.
pub async fn ensure(cache: &Path, mirror: &str) -> Result<BaseImage, LabError> {
    let img = BaseImage::at(cache);
    if img.is_complete() {
        return Ok(img);
    }
    super::create_dir_mode(&img.dir, 0o755)?;
    // One builder at a time (a hand-started `lab up` and the e2e test share the cache); the
    // lock is released when `_lock` drops. A waiter finds the finished image afterwards.
    let _lock = lock(&img.dir.join("build.lock")).await?;
    if img.is_complete() {
        return Ok(img);
    }
    let tmp = img.dir.join("rootfs.tmp");
    for stale in [&tmp, &img.rootfs] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| LabError::io(stale, e))?;
        }
    }
    let script = img.dir.join("image-recipe.sh");
    std::fs::write(&script, RECIPE).map_err(|e| LabError::io(&script, e))?;
    let log = img.dir.join("build.log");
    eprintln!(
        "lab: building the base image with debootstrap from {mirror} (a few minutes; log: {})",
        log.display()
    );
    let log_file = std::fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
    let status = tokio::process::Command::new("sh")
        .arg(&script)
        .arg(&tmp)
        .arg(mirror)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| LabError::io(&log, e))?)
        .stderr(log_file)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| LabError::Spawn {
            step: "build lab image".into(),
            command: format!("sh {}", script.display()),
            source: e,
        })?;
    if !status.success() {
        return Err(LabError::ImageBuild {
            log: log.clone(),
            detail: format!("the recipe exited with {status}"),
        });
    }
    std::fs::rename(&tmp, &img.rootfs).map_err(|e| LabError::io(&img.rootfs, e))?;
    finish(&img).await?;
    Ok(img)
}

async fn lock(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, LabError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LabError::io(path, e))?;
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| LabError::io(&p, std::io::Error::from(errno)))
    })
    .await
    .map_err(|e| LabError::io(path, std::io::Error::other(e)))?
}

/// Copies the kernel and initrd out of the rootfs and marks the build complete.
pub async fn finish(img: &BaseImage) -> Result<(), LabError> {
    let boot = img.rootfs.join("boot");
    let pick = |prefix: &str| -> Result<PathBuf, LabError> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
            .map_err(|e| LabError::io(&boot, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        found.sort();
        found.pop().ok_or_else(|| LabError::ImageBuild {
            log: img.dir.join("build.log"),
            detail: format!("no {prefix}* in {}", boot.display()),
        })
    };
    for (src, dst) in [
        (pick("vmlinuz-")?, &img.kernel),
        (pick("initrd.img-")?, &img.initrd),
    ] {
        std::fs::copy(&src, dst).map_err(|e| LabError::io(dst, e))?;
    }
    Tool::new("sync lab image", "sync").run().await?;
    let done = img.dir.join("complete");
    std::fs::write(&done, recipe_hash()).map_err(|e| LabError::io(&done, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, content: &str) -> (String, String) {
        (name.to_string(), content.to_string())
    }

    #[test]
    fn deb822_skips_security() {
        let files = [f(
            "/etc/apt/sources.list.d/debian.sources",
            "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
             Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\n",
        )];
        assert_eq!(
            mirror_from_apt_sources(&files).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn one_line_with_options_and_comments() {
        let files = [f(
            "sources.list",
            "# deb http://commented.example/debian bookworm main\n\
             deb-src http://src.example/debian bookworm main\n\
             deb http://security.debian.org/debian-security bookworm-security main\n\
             deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n",
        )];
        assert_eq!(
            mirror_from_apt_sources(&files).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn disabled_and_empty_sources_give_none() {
        let files = [
            f(
                "a.sources",
                "Types: deb\nURIs: http://x.example/d\nSuites: bookworm\nEnabled: no\n",
            ),
            f("sources.list", ""),
        ];
        assert_eq!(mirror_from_apt_sources(&files), None);
    }

    #[test]
    fn cache_dir_is_keyed_by_recipe_hash() {
        let h = recipe_hash();
        assert_eq!(h.len(), 64);
        let img = BaseImage::at(Path::new("/c"));
        assert_eq!(img.dir, Path::new("/c").join(&h));
        assert!(RECIPE.contains("debootstrap --variant=minbase"));
    }
}
