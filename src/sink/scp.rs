//! Legacy scp (`scp -O`, or an old client): the remote end runs `scp -t PATH` (receive) or
//! `scp -f PATH` (send). The sink speaks that small line protocol itself: `C<mode> <size>
//! <name>` records for single files (no `D` directories, no recursion); `T` time records are
//! acknowledged and ignored. Files go through the same [`Store`] checks as every other write.

use std::io::{self, BufRead, Read, Write};

use super::policy::Loc;
use super::store::{Store, StoreError};

const MAX_LINE: usize = 1024;

fn read_line(input: &mut dyn BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = input.take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::other("scp: control line too long or cut"));
    }
    buf.pop();
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::other("scp: control line is not UTF-8"))
}

/// Parses `C0644 1234 name`.
pub fn parse_c_line(line: &str) -> Option<(u64, String)> {
    let rest = line.strip_prefix('C')?;
    let mut it = rest.splitn(3, ' ');
    let mode = it.next()?;
    if mode.len() != 4 || !mode.chars().all(|c| c.is_digit(8)) {
        return None;
    }
    let size = it.next()?.parse().ok()?;
    let name = it.next()?.to_string();
    Some((size, name))
}

fn fatal(out: &mut dyn Write, msg: &str) -> io::Result<()> {
    out.write_all(format!("\x02dump-sink: {msg}\n").as_bytes())?;
    out.flush()
}

fn ack(input: &mut dyn BufRead) -> io::Result<()> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b)?;
    if b[0] != 0 {
        return Err(io::Error::other("scp: the client reported an error"));
    }
    Ok(())
}

/// `scp -t PATH`. Returns Err(message) for the caller to log as a refusal or failure.
pub fn receive(
    store: &Store,
    target: &Loc,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: io::Error| e.to_string();
    out.write_all(&[0]).and_then(|_| out.flush()).map_err(io)?;
    while let Some(line) = read_line(input).map_err(io)? {
        if line.starts_with('T') {
            out.write_all(&[0]).and_then(|_| out.flush()).map_err(io)?;
            continue;
        }
        let Some((size, name)) = parse_c_line(&line) else {
            let msg = format!(
                "scp record {:?} is not served (single files only)",
                line.chars().take(40).collect::<String>()
            );
            let _ = fatal(out, &msg);
            return Err(msg);
        };
        let loc = match target {
            Loc::Dir(d) => Loc::File {
                dir: d.clone(),
                name: name.clone(),
            },
            Loc::File { .. } => target.clone(),
            _ => {
                let msg = "scp target must be a dump directory or a file in one".to_string();
                let _ = fatal(out, &msg);
                return Err(msg);
            }
        };
        // The name in the record is checked like any path component.
        if let Loc::File { name, .. } = &loc
            && let Err(r) = store
                .client()
                .resolve(store.base_path(), &format!("{}/{}", dir_of(&loc), name))
        {
            let _ = fatal(out, &r.0);
            return Err(r.0);
        }
        let mut f = match store.create(&loc) {
            Ok(f) => f,
            Err(e) => {
                let msg = e.to_string();
                let _ = fatal(out, &msg);
                return Err(msg);
            }
        };
        out.write_all(&[0]).and_then(|_| out.flush()).map_err(io)?;
        store
            .receive(&mut f, input, Some(size))
            .map_err(|e: StoreError| e.to_string())?;
        drop(f);
        ack(input).map_err(io)?;
        out.write_all(&[0]).and_then(|_| out.flush()).map_err(io)?;
    }
    Ok(())
}

fn dir_of(loc: &Loc) -> &str {
    match loc {
        Loc::File { dir, .. } | Loc::Dir(dir) => dir,
        _ => "",
    }
}

/// `scp -f PATH`: only the status file of `kdumpctl test`.
pub fn send(
    store: &Store,
    source: &Loc,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |e: io::Error| e.to_string();
    ack(input).map_err(io)?;
    let mut f = match store.open_read(source) {
        Ok(f) => f,
        Err(e) => {
            let msg = e.to_string();
            let _ = fatal(out, &msg);
            return Err(msg);
        }
    };
    let mut data = Vec::new();
    (&mut f.file)
        .take(1 << 20)
        .read_to_end(&mut data)
        .map_err(io)?;
    out.write_all(format!("C0600 {} {}\n", data.len(), f.name).as_bytes())
        .and_then(|_| out.flush())
        .map_err(io)?;
    ack(input).map_err(io)?;
    out.write_all(&data)
        .and_then(|_| out.write_all(&[0]))
        .and_then(|_| out.flush())
        .map_err(io)?;
    ack(input).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_lines() {
        assert_eq!(
            parse_c_line("C0644 12 dmesg.1"),
            Some((12, "dmesg.1".into()))
        );
        assert_eq!(parse_c_line("C0644 12 a b"), Some((12, "a b".into())));
        assert!(parse_c_line("D0755 0 dir").is_none());
        assert!(parse_c_line("C644 1 x").is_none());
        assert!(parse_c_line("C0644 -1 x").is_none());
    }
}
