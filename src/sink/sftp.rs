//! A write-only SFTP (version 3) server for one client, over stdin/stdout.
//!
//! bookworm's `scp` speaks SFTP by default, and sshd runs the forced command for the `sftp`
//! subsystem too, so the sink serves the handful of requests `scp` makes to upload a file:
//! INIT, REALPATH, STAT/LSTAT/FSTAT, OPEN (create/write, or read of the status file), WRITE,
//! READ, CLOSE, MKDIR, RENAME, and FSETSTAT (acknowledged, ignored: modes are the sink's). Everything else is answered OP_UNSUPPORTED or
//! PERMISSION_DENIED. The codec ([`Packet`] parsing and the reply builders) is pure; the
//! [`Server`] applies requests to a [`Store`], which confines them like the ssh commands.
//! (No crate fitted: russh-sftp's server runs detached on a tokio task and retries forever on a
//! malformed packet; this one is synchronous and stops on the first protocol error.)

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::policy::Loc;
use super::store::{OpenFile, Store, StoreError};

pub const VERSION: u32 = 3;
/// Largest packet accepted from a client (OpenSSH sends at most 256 KiB).
pub const MAX_PACKET: u32 = 256 * 1024 + 1024;
/// Open handles at once.
pub const MAX_HANDLES: usize = 16;

pub mod ty {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const FSETSTAT: u8 = 10;
    pub const MKDIR: u8 = 14;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
}

pub mod status {
    pub const OK: u32 = 0;
    pub const EOF: u32 = 1;
    pub const NO_SUCH_FILE: u32 = 2;
    pub const PERMISSION_DENIED: u32 = 3;
    pub const FAILURE: u32 = 4;
    pub const BAD_MESSAGE: u32 = 5;
    pub const OP_UNSUPPORTED: u32 = 8;
}

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_CREAT: u32 = 0x08;

/// A protocol error that ends the session.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("SFTP: {0}")]
    Protocol(String),
    #[error("SFTP: {0}")]
    Io(#[from] io::Error),
}

/// A cursor over one packet's payload.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], SftpError> {
        if self.buf.len() < n {
            return Err(SftpError::Protocol("truncated packet".into()));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u32(&mut self) -> Result<u32, SftpError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, SftpError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], SftpError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, SftpError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| SftpError::Protocol("a path is not UTF-8".into()))
    }
    /// Skips an ATTRS structure (the sink sets its own owner and mode).
    pub fn skip_attrs(&mut self) -> Result<(), SftpError> {
        let flags = self.u32()?;
        if flags & 0x1 != 0 {
            self.u64()?;
        }
        if flags & 0x2 != 0 {
            self.u32()?;
            self.u32()?;
        }
        if flags & 0x4 != 0 {
            self.u32()?;
        }
        if flags & 0x8 != 0 {
            self.u32()?;
            self.u32()?;
        }
        if flags & 0x8000_0000 != 0 {
            let n = self.u32()?;
            for _ in 0..n.min(64) {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(())
    }
}

/// Builds one outgoing packet.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(ty: u8) -> Self {
        Writer {
            buf: vec![0, 0, 0, 0, ty],
        }
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self = self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        self
    }
    pub fn finish(mut self) -> Vec<u8> {
        let n = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        self.buf
    }
}

pub fn status_packet(id: u32, code: u32, msg: &str) -> Vec<u8> {
    Writer::new(ty::STATUS)
        .u32(id)
        .u32(code)
        .bytes(msg.as_bytes())
        .bytes(b"en")
        .finish()
}

/// File attributes as SFTP carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Including the file type bits (S_IFDIR, S_IFREG).
    pub perm: u32,
    pub mtime: u32,
}

impl Attrs {
    fn write(self, w: Writer) -> Writer {
        w.u32(0x1 | 0x2 | 0x4 | 0x8)
            .u64(self.size)
            .u32(self.uid)
            .u32(self.gid)
            .u32(self.perm)
            .u32(self.mtime)
            .u32(self.mtime)
    }

    fn of(st: &rustix::fs::Stat) -> Attrs {
        Attrs {
            size: st.st_size.max(0) as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            perm: st.st_mode,
            mtime: st.st_mtime.clamp(0, u32::MAX as i64) as u32,
        }
    }
}

pub fn attrs_packet(id: u32, a: Attrs) -> Vec<u8> {
    a.write(Writer::new(ty::ATTRS).u32(id)).finish()
}

pub fn name_packet(id: u32, name: &str) -> Vec<u8> {
    Writer::new(ty::NAME)
        .u32(id)
        .u32(1)
        .bytes(name.as_bytes())
        .bytes(name.as_bytes())
        .u32(0)
        .finish()
}

/// Reads one packet (length, then body); `None` at a clean end of input.
pub fn read_packet(input: &mut dyn Read) -> Result<Option<Vec<u8>>, SftpError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_be_bytes(len);
    if n == 0 || n > MAX_PACKET {
        return Err(SftpError::Protocol(format!("packet of {n} bytes refused")));
    }
    let mut body = vec![0u8; n as usize];
    input.read_exact(&mut body)?;
    Ok(Some(body))
}

struct Handle {
    file: OpenFile,
    writable: bool,
}

/// One SFTP session of one client.
pub struct Server<'a> {
    store: &'a Store,
    handles: HashMap<u32, Handle>,
    next: u32,
    /// Called with each refusal (the session logs it as an event).
    on_refused: &'a dyn Fn(&str),
}

impl<'a> Server<'a> {
    pub fn new(store: &'a Store, on_refused: &'a dyn Fn(&str)) -> Self {
        Server {
            store,
            handles: HashMap::new(),
            next: 1,
            on_refused,
        }
    }

    /// Serves until the client closes its side.
    pub fn serve(&mut self, input: &mut dyn Read, output: &mut dyn Write) -> Result<(), SftpError> {
        while let Some(p) = read_packet(input)? {
            let reply = self.handle(&p)?;
            output.write_all(&reply)?;
            output.flush()?;
        }
        Ok(())
    }

    fn err_reply(&self, id: u32, e: StoreError) -> Vec<u8> {
        match e {
            StoreError::Refused(m) => {
                (self.on_refused)(&m);
                status_packet(id, status::PERMISSION_DENIED, &m)
            }
            StoreError::Io { what, source } => {
                let code = if source.kind() == io::ErrorKind::NotFound {
                    status::NO_SUCH_FILE
                } else {
                    status::FAILURE
                };
                status_packet(id, code, &format!("{what}: {source}"))
            }
        }
    }

    fn resolve(&self, path: &str) -> Result<Loc, StoreError> {
        self.store
            .client()
            .resolve(self.store.base_path(), path)
            .map_err(|r| StoreError::Refused(r.0))
    }

    /// The absolute name a client path stands for (what REALPATH answers).
    fn display(&self, loc: &Loc) -> String {
        let base = self.store.base_path();
        match loc {
            Loc::Base => base.to_string(),
            Loc::Dir(d) => format!("{base}/{d}"),
            Loc::File { dir, name } => format!("{base}/{dir}/{name}"),
            Loc::Magic => format!("{base}/magic/{}", self.store.client().ip),
        }
    }

    /// Handles one packet and returns the reply.
    pub fn handle(&mut self, p: &[u8]) -> Result<Vec<u8>, SftpError> {
        let mut r = Reader::new(p);
        let t = r.take(1)?[0];
        if t == ty::INIT {
            let _client_version = r.u32()?;
            return Ok(Writer::new(ty::VERSION).u32(VERSION).finish());
        }
        let id = r.u32()?;
        let reply = match t {
            ty::REALPATH => {
                let path = r.string()?;
                match self.resolve(&path) {
                    Ok(loc) => name_packet(id, &self.display(&loc)),
                    Err(e) => self.err_reply(id, e),
                }
            }
            ty::STAT | ty::LSTAT => {
                let path = r.string()?;
                match self.resolve(&path).and_then(|l| self.store.stat(&l)) {
                    Ok(Some(st)) => attrs_packet(id, Attrs::of(&st)),
                    Ok(None) => status_packet(id, status::NO_SUCH_FILE, "no such file"),
                    Err(e) => self.err_reply(id, e),
                }
            }
            ty::OPEN => {
                let path = r.string()?;
                let flags = r.u32()?;
                r.skip_attrs()?;
                if self.handles.len() >= MAX_HANDLES {
                    status_packet(id, status::FAILURE, "too many open files")
                } else {
                    let writable = flags & FXF_WRITE != 0;
                    let opened = self.resolve(&path).and_then(|loc| {
                        if writable && flags & FXF_READ == 0 && flags & FXF_CREAT != 0 {
                            self.store.create(&loc)
                        } else if writable {
                            Err(StoreError::Refused(
                                "files are opened write-only with create".into(),
                            ))
                        } else {
                            self.store.open_read(&loc)
                        }
                    });
                    match opened {
                        Ok(file) => {
                            let h = self.next;
                            self.next = self.next.wrapping_add(1);
                            self.handles.insert(h, Handle { file, writable });
                            Writer::new(ty::HANDLE)
                                .u32(id)
                                .bytes(&h.to_be_bytes())
                                .finish()
                        }
                        Err(e) => self.err_reply(id, e),
                    }
                }
            }
            ty::WRITE => {
                let h = handle_id(r.bytes()?);
                let off = r.u64()?;
                let data = r.bytes()?;
                match self.handles.get(&h) {
                    Some(hd) if hd.writable => match hd.file.file.write_all_at(data, off) {
                        Ok(()) => status_packet(id, status::OK, ""),
                        Err(e) => status_packet(id, status::FAILURE, &e.to_string()),
                    },
                    Some(_) => status_packet(id, status::PERMISSION_DENIED, "not open for writing"),
                    None => status_packet(id, status::FAILURE, "bad handle"),
                }
            }
            ty::READ => {
                let h = handle_id(r.bytes()?);
                let off = r.u64()?;
                let len = r.u32()?.min(64 * 1024) as usize;
                match self.handles.get(&h) {
                    Some(hd) if !hd.writable => {
                        let mut buf = vec![0u8; len];
                        match hd.file.file.read_at(&mut buf, off) {
                            Ok(0) => status_packet(id, status::EOF, "end of file"),
                            Ok(n) => Writer::new(ty::DATA).u32(id).bytes(&buf[..n]).finish(),
                            Err(e) => status_packet(id, status::FAILURE, &e.to_string()),
                        }
                    }
                    Some(_) => status_packet(id, status::PERMISSION_DENIED, "not open for reading"),
                    None => status_packet(id, status::FAILURE, "bad handle"),
                }
            }
            ty::FSTAT => {
                let h = handle_id(r.bytes()?);
                match self.handles.get(&h) {
                    Some(hd) => match rustix::fs::fstat(&hd.file.file) {
                        Ok(st) => attrs_packet(id, Attrs::of(&st)),
                        Err(e) => status_packet(id, status::FAILURE, &e.to_string()),
                    },
                    None => status_packet(id, status::FAILURE, "bad handle"),
                }
            }
            // scp sends the source's permissions after an upload; the sink keeps its own modes
            // (files 0600) and answers OK without changing anything.
            ty::FSETSTAT => {
                let h = handle_id(r.bytes()?);
                r.skip_attrs()?;
                match self.handles.get(&h) {
                    Some(_) => status_packet(id, status::OK, ""),
                    None => status_packet(id, status::FAILURE, "bad handle"),
                }
            }
            ty::CLOSE => {
                let h = handle_id(r.bytes()?);
                match self.handles.remove(&h) {
                    Some(_) => status_packet(id, status::OK, ""),
                    None => status_packet(id, status::FAILURE, "bad handle"),
                }
            }
            ty::MKDIR => {
                let path = r.string()?;
                r.skip_attrs()?;
                match self.resolve(&path).and_then(|l| self.store.mkdir(&l)) {
                    Ok(_) => status_packet(id, status::OK, ""),
                    Err(e) => self.err_reply(id, e),
                }
            }
            ty::RENAME => {
                let from = r.string()?;
                let to = r.string()?;
                let res = self
                    .resolve(&from)
                    .and_then(|a| Ok((a, self.resolve(&to)?)))
                    .and_then(|(a, b)| self.store.rename(&a, &b));
                match res {
                    Ok(()) => status_packet(id, status::OK, ""),
                    Err(e) => self.err_reply(id, e),
                }
            }
            other => {
                let m = format!("SFTP request {other} is not served by the dump sink");
                (self.on_refused)(&m);
                status_packet(id, status::OP_UNSUPPORTED, &m)
            }
        };
        Ok(reply)
    }
}

fn handle_id(b: &[u8]) -> u32 {
    b.try_into().map(u32::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::policy::Client;
    use crate::sink::store::Limits;

    fn req(t: u8, id: u32, f: impl FnOnce(Writer) -> Writer) -> Vec<u8> {
        let w = f(Writer::new(t).u32(id)).finish();
        w[4..].to_vec()
    }

    fn status_of(reply: &[u8]) -> u32 {
        assert_eq!(reply[4], ty::STATUS, "{reply:?}");
        u32::from_be_bytes(reply[9..13].try_into().unwrap())
    }

    #[test]
    fn an_upload_as_scp_does_it_and_what_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().to_str().unwrap().to_string();
        let store = Store::open(
            &base,
            Client {
                name: "c1".into(),
                ip: "198.18.0.11".parse().unwrap(),
            },
            Limits {
                min_free: 0,
                keep_dumps: 0,
                max_total: 0,
            },
        )
        .unwrap();
        let refusals = std::cell::RefCell::new(Vec::<String>::new());
        let note = |m: &str| refusals.borrow_mut().push(m.to_string());
        let mut s = Server::new(&store, &note);
        let v = s
            .handle(&Writer::new(ty::INIT).u32(3).finish()[4..])
            .unwrap();
        assert_eq!(v[4], ty::VERSION);
        let dir = format!("{base}/198.18.0.11-202612020425");
        let r = s
            .handle(&req(ty::MKDIR, 1, |w| w.bytes(dir.as_bytes()).u32(0)))
            .unwrap();
        assert_eq!(status_of(&r), status::OK);
        let r = s
            .handle(&req(ty::STAT, 2, |w| w.bytes(dir.as_bytes())))
            .unwrap();
        assert_eq!(r[4], ty::ATTRS);
        let r = s.handle(&req(ty::REALPATH, 3, |w| w.bytes(b"."))).unwrap();
        assert_eq!(r[4], ty::NAME);
        let file = format!("{dir}/dmesg.202612020425");
        let r = s
            .handle(&req(ty::OPEN, 4, |w| {
                w.bytes(file.as_bytes())
                    .u32(FXF_WRITE | FXF_CREAT | 0x10)
                    .u32(0)
            }))
            .unwrap();
        assert_eq!(r[4], ty::HANDLE, "{r:?}");
        let h = r[13..17].to_vec();
        let r = s
            .handle(&req(ty::WRITE, 5, |w| {
                w.bytes(&h).u64(0).bytes(b"sysrq: Trigger a crash")
            }))
            .unwrap();
        assert_eq!(status_of(&r), status::OK);
        let r = s.handle(&req(ty::CLOSE, 6, |w| w.bytes(&h))).unwrap();
        assert_eq!(status_of(&r), status::OK);
        assert_eq!(
            std::fs::read_to_string(t.path().join("198.18.0.11-202612020425/dmesg.202612020425"))
                .unwrap(),
            "sysrq: Trigger a crash"
        );
        // Finished: no second write; other clients, listing, removal, links: refused.
        let r = s
            .handle(&req(ty::OPEN, 7, |w| {
                w.bytes(file.as_bytes()).u32(FXF_WRITE | FXF_CREAT).u32(0)
            }))
            .unwrap();
        assert_eq!(status_of(&r), status::PERMISSION_DENIED);
        let other = format!("{base}/198.18.0.12-1/x");
        let r = s
            .handle(&req(ty::OPEN, 8, |w| {
                w.bytes(other.as_bytes()).u32(FXF_WRITE | FXF_CREAT).u32(0)
            }))
            .unwrap();
        assert_eq!(status_of(&r), status::PERMISSION_DENIED);
        let r = s
            .handle(&req(ty::OPEN, 9, |w| {
                w.bytes(file.as_bytes()).u32(FXF_READ).u32(0)
            }))
            .unwrap();
        assert_eq!(status_of(&r), status::PERMISSION_DENIED);
        for t in [11u8, 13, 15, 19, 20, 9] {
            let r = s.handle(&req(t, 10, |w| w.bytes(dir.as_bytes()))).unwrap();
            assert_eq!(status_of(&r), status::OP_UNSUPPORTED);
        }
        assert!(refusals.borrow().len() >= 8);
    }

    #[test]
    fn oversized_and_truncated_packets_end_the_session() {
        let mut big = &[0xff, 0xff, 0xff, 0xff][..];
        assert!(read_packet(&mut big).is_err());
        let mut short = &[0, 0, 0, 9, 1][..];
        assert!(read_packet(&mut short).is_err());
        let mut empty = &[][..];
        assert!(read_packet(&mut empty).unwrap().is_none());
    }
}
