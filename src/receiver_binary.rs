//! The program `apply` installs on servers as the embedded receiver: which file it is, and
//! whether it can run there. A statically linked build (`--target x86_64-unknown-linux-musl`)
//! runs on any Linux of its architecture; a dynamically linked one only where the C library is
//! at least as new as the one it was linked against. Both are checked against the server's
//! facts before anything is uploaded.

use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, elf};

use crate::facts::Facts;

/// What an ELF executable needs from the host it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    /// `uname -m` spelling of its machine (`x86_64`, `aarch64`...), `None` when unusual.
    pub arch: Option<&'static str>,
    /// No program interpreter: it loads no shared libraries.
    pub is_static: bool,
    /// Newest `GLIBC_x.y` symbol version it needs (dynamic binaries).
    pub glibc_needed: Option<(u32, u32)>,
}

/// The receiver binary, read once per run.
#[derive(Debug)]
pub struct ReceiverBinary {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub info: BinaryInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("receiver binary {path}: cannot read it: {source}. Pass --receiver-binary PATH")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "receiver binary {path}: not a 64-bit ELF executable ({detail}). Pass --receiver-binary with a `provision` build"
    )]
    NotElf { path: PathBuf, detail: String },
}

impl ReceiverBinary {
    pub fn load(path: &Path) -> Result<ReceiverBinary, BinaryError> {
        let bytes = std::fs::read(path).map_err(|source| BinaryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let info = inspect(&bytes).map_err(|detail| BinaryError::NotElf {
            path: path.to_path_buf(),
            detail,
        })?;
        Ok(ReceiverBinary {
            path: path.to_path_buf(),
            bytes,
            info,
        })
    }
}

fn arch_name(machine: elf::Machine) -> Option<&'static str> {
    Some(match machine {
        elf::EM_X86_64 => "x86_64",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_PPC64 => "ppc64le",
        elf::EM_S390 => "s390x",
        elf::EM_RISCV => "riscv64",
        _ => return None,
    })
}

/// `GLIBC_2.34` → (2, 34); other version names → None.
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let v = std::str::from_utf8(name).ok()?.strip_prefix("GLIBC_")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// Reads what `bytes` (a 64-bit ELF executable) needs from its host.
pub fn inspect(bytes: &[u8]) -> Result<BinaryInfo, String> {
    let file = ElfFile64::<Endianness>::parse(bytes).map_err(|e| e.to_string())?;
    let endian = file.endian();
    let header = file.elf_header();
    let is_static = !file
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == elf::PT_INTERP);
    let mut glibc_needed: Option<(u32, u32)> = None;
    let sections = header.sections(endian, bytes).map_err(|e| e.to_string())?;
    for section in sections.iter() {
        let Some((mut needs, link)) = section
            .gnu_verneed(endian, bytes)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| e.to_string())?;
        while let Some((_, mut aux)) = needs.next().map_err(|e| e.to_string())? {
            while let Some(a) = aux.next().map_err(|e| e.to_string())? {
                let name = a.name(endian, strings).map_err(|e| e.to_string())?;
                if let Some(v) = glibc_version(name) {
                    glibc_needed = glibc_needed.max(Some(v));
                }
            }
        }
    }
    Ok(BinaryInfo {
        arch: arch_name(header.e_machine(endian)),
        is_static,
        glibc_needed,
    })
}

const STATIC_HINT: &str = "build a static one (`rustup target add x86_64-unknown-linux-musl; cargo build --release --target x86_64-unknown-linux-musl`) and pass it with --receiver-binary, or set netdump_receiver: package";

/// Whether `info` can run on the host described by `facts`; the error says why not and what to
/// do.
pub fn check(info: &BinaryInfo, facts: &Facts) -> Result<(), String> {
    let host_arch = facts.arch.trim();
    if let Some(arch) = info.arch
        && !host_arch.is_empty()
        && host_arch != arch
        && !(arch == "ppc64le" && host_arch == "ppc64")
    {
        return Err(format!(
            "the receiver binary is built for {arch} and this host is {host_arch}; build provision for {host_arch} and pass it with --receiver-binary"
        ));
    }
    if info.is_static {
        return Ok(());
    }
    let needed = info.glibc_needed.unwrap_or((2, 0));
    match facts.glibc {
        Some(have) if have >= needed => Ok(()),
        Some(have) => Err(format!(
            "the receiver binary is dynamically linked and needs glibc {}.{}, this host has glibc {}.{}; {STATIC_HINT}",
            needed.0, needed.1, have.0, have.1
        )),
        None => Err(format!(
            "the receiver binary is dynamically linked against glibc {}.{} and this host reports no glibc (getconf GNU_LIBC_VERSION); {STATIC_HINT}",
            needed.0, needed.1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(arch: &str, glibc: Option<(u32, u32)>) -> Facts {
        let mut f = crate::facts::parse(&format!(
            "os_id=debian\nkernel=6.1.0\narch={arch}\npkg=apt\ninit=systemd\nprobe_end=1\n"
        ))
        .unwrap();
        f.glibc = glibc;
        f
    }

    #[test]
    fn this_test_binary_is_dynamic_and_needs_glibc() {
        let me = std::env::current_exe().unwrap();
        let b = ReceiverBinary::load(&me).unwrap();
        assert_eq!(b.info.arch, Some(std::env::consts::ARCH));
        if cfg!(target_env = "gnu") && !cfg!(target_feature = "crt-static") {
            assert!(!b.info.is_static);
            let v = b.info.glibc_needed.expect("GLIBC_ versions");
            assert!(((2, 2)..(3, 0)).contains(&v), "{v:?}");
        }
    }

    #[test]
    fn ldconfig_is_static() {
        // glibc's ldconfig is a static-pie executable on Debian and RHEL alike.
        let Some(p) = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            netdump_test_support::skip(
                "receiver_binary glibc check",
                "no ldconfig on this machine",
            );
            return;
        };
        let b = ReceiverBinary::load(p).unwrap();
        assert!(b.info.is_static, "{:?}", b.info);
        assert_eq!(b.info.glibc_needed, None);
    }

    #[test]
    fn non_elf_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let e = ReceiverBinary::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("script") && e.contains("not a 64-bit ELF"),
            "{e}"
        );
        let e = ReceiverBinary::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
        assert!(inspect(&[0x7f, b'E', b'L', b'F', 2, 1, 1]).is_err());
        assert!(inspect(&[]).is_err());
    }

    #[test]
    fn glibc_versions_parse() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version(b"GCC_3.0"), None);
    }

    #[test]
    fn checks_against_the_server() {
        let dynamic = BinaryInfo {
            arch: Some("x86_64"),
            is_static: false,
            glibc_needed: Some((2, 34)),
        };
        let stat = BinaryInfo {
            arch: Some("x86_64"),
            is_static: true,
            glibc_needed: None,
        };
        assert!(check(&dynamic, &facts("x86_64", Some((2, 36)))).is_ok());
        assert!(check(&dynamic, &facts("x86_64", Some((2, 34)))).is_ok());
        let e = check(&dynamic, &facts("x86_64", Some((2, 17)))).unwrap_err();
        assert!(
            e.contains("needs glibc 2.34") && e.contains("has glibc 2.17"),
            "{e}"
        );
        assert!(e.contains("x86_64-unknown-linux-musl"), "{e}");
        let e = check(&dynamic, &facts("x86_64", None)).unwrap_err();
        assert!(e.contains("reports no glibc"), "{e}");
        // A static build runs on old glibc and on musl or glibc-less hosts alike.
        assert!(check(&stat, &facts("x86_64", Some((2, 3)))).is_ok());
        assert!(check(&stat, &facts("x86_64", None)).is_ok());
        // ...but not on another architecture.
        let e = check(&stat, &facts("aarch64", None)).unwrap_err();
        assert!(
            e.contains("built for x86_64") && e.contains("aarch64"),
            "{e}"
        );
        // Unknown host architecture: not held against it.
        assert!(check(&stat, &facts("", None)).is_ok());
    }
}
