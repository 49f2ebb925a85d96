//! The ELF core header of a netdump vmcore, in the layout `crash` recognises as netdump
//! (docs/vmcore.md): ELF class/byte order/e_machine of the client, phdr[0] = PT_NOTE,
//! phdr[1] = one page-aligned PT_LOAD from physical address 0 with `p_align` = client page size,
//! CORE notes with `n_namesz = 4` (NT_PRSTATUS with the REGS block, NT_TASKSTRUCT).
//! Page `pfn` lives at `data_offset + pfn * page_size`. Pure: produces bytes, does no IO.

use crate::wire::machine;

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const NT_PRSTATUS: u32 = 1;
pub const NT_TASKSTRUCT: u32 = 4;
const ET_CORE: u16 = 4;
const EV_CURRENT: u8 = 1;
const PF_RWX: u32 = 7;

/// What the header is built from (all from the client's START, PAGE_SIZE, NR_PAGES, REGS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreParams {
    pub machine: u16,
    pub page_size: u32,
    pub nr_pages: u32,
    pub page_offset: u64,
    pub task_struct: u64,
    /// Raw register block in the client's byte order.
    pub regs: Vec<u8>,
}

/// Byte order and class of a client, from its ELF machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abi {
    pub elf64: bool,
    pub little: bool,
}

impl Abi {
    pub fn of(machine_nr: u16) -> Abi {
        Abi {
            elf64: machine_nr != machine::I386,
            little: matches!(machine_nr, machine::I386 | machine::X86_64 | machine::IA64),
        }
    }
}

/// Expected `elf_gregset_t` size for the arches whose layout is known (docs/netdump-wire.md, "A dump, step by step", step 4).
pub fn gregset_size(machine_nr: u16) -> Option<usize> {
    match machine_nr {
        machine::I386 => Some(17 * 4),
        machine::X86_64 => Some(27 * 8),
        machine::PPC64 => Some(48 * 8),
        _ => None,
    }
}

/// A built header and where page data starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreHeader {
    pub bytes: Vec<u8>,
    /// File offset of physical address 0 (page-aligned, = PT_LOAD p_offset).
    pub data_offset: u64,
    /// Full file length when complete.
    pub file_len: u64,
    pub page_size: u32,
}

impl CoreHeader {
    pub fn page_offset_in_file(&self, pfn: u32) -> u64 {
        self.data_offset + pfn as u64 * self.page_size as u64
    }
}

struct W {
    buf: Vec<u8>,
    abi: Abi,
}

impl W {
    fn u16(&mut self, v: u16) {
        let b = if self.abi.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.buf.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.abi.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.buf.extend_from_slice(&b);
    }
    fn u64(&mut self, v: u64) {
        let b = if self.abi.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.buf.extend_from_slice(&b);
    }
    /// Native `unsigned long` / ELF address.
    fn word(&mut self, v: u64) {
        if self.abi.elf64 {
            self.u64(v)
        } else {
            self.u32(v as u32)
        }
    }
    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// Builds an `elf_prstatus` descriptor of the client ABI with `pr_reg` = `regs`
/// (i386: 144 bytes, pr_reg at 72; 64-bit: pr_reg at 112, then pr_fpvalid, padded to 8).
pub fn prstatus(p: &CoreParams) -> Vec<u8> {
    let abi = Abi::of(p.machine);
    let reg_len = gregset_size(p.machine).unwrap_or(p.regs.len());
    let mut regs = p.regs.clone();
    regs.resize(reg_len, 0);
    let (head, align) = if abi.elf64 { (112, 8) } else { (72, 4) };
    let mut d = vec![0u8; head];
    d.extend_from_slice(&regs);
    d.extend_from_slice(&[0u8; 4]); // pr_fpvalid
    while !d.len().is_multiple_of(align) {
        d.push(0);
    }
    d
}

fn note(w: &mut W, ntype: u32, desc: &[u8]) {
    w.u32(4); // n_namesz: "CORE" without NUL, as 2.4 kcore and netdump did (crash relies on it)
    w.u32(desc.len() as u32);
    w.u32(ntype);
    w.buf.extend_from_slice(b"CORE");
    w.buf.extend_from_slice(desc);
    w.pad4();
}

/// Builds the header for a client. `page_size` must be a non-zero power of two.
pub fn build(p: &CoreParams) -> CoreHeader {
    let abi = Abi::of(p.machine);
    let (ehdr, phdr) = if abi.elf64 { (64u64, 56u64) } else { (52, 32) };
    let phnum = 2u16;
    // Notes, built first to know their size.
    let mut nw = W {
        buf: Vec::new(),
        abi,
    };
    note(&mut nw, NT_PRSTATUS, &prstatus(p));
    let mut task = W {
        buf: Vec::new(),
        abi,
    };
    task.word(p.task_struct);
    note(&mut nw, NT_TASKSTRUCT, &task.buf);
    let notes = nw.buf;

    let note_off = ehdr + phdr * phnum as u64;
    let hdr_end = note_off + notes.len() as u64;
    let ps = p.page_size.max(4096) as u64;
    let data_offset = hdr_end.div_ceil(ps) * ps;
    let mem_len = p.nr_pages as u64 * p.page_size as u64;

    let mut w = W {
        buf: Vec::with_capacity(hdr_end as usize),
        abi,
    };
    // e_ident
    w.buf.extend_from_slice(b"\x7fELF");
    w.buf.push(if abi.elf64 { 2 } else { 1 });
    w.buf.push(if abi.little { 1 } else { 2 });
    w.buf.push(EV_CURRENT);
    w.buf.resize(16, 0);
    w.u16(ET_CORE);
    w.u16(p.machine);
    w.u32(1); // e_version
    w.word(0); // e_entry
    w.word(ehdr); // e_phoff
    w.word(0); // e_shoff
    w.u32(0); // e_flags
    w.u16(ehdr as u16);
    w.u16(phdr as u16);
    w.u16(phnum);
    w.u16(if abi.elf64 { 64 } else { 40 }); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx
    debug_assert_eq!(w.buf.len() as u64, ehdr);
    phdr_entry(&mut w, PT_NOTE, 0, note_off, 0, 0, notes.len() as u64, 0);
    phdr_entry(
        &mut w,
        PT_LOAD,
        PF_RWX,
        data_offset,
        p.page_offset,
        0,
        mem_len,
        p.page_size as u64,
    );
    w.buf.extend_from_slice(&notes);
    CoreHeader {
        bytes: w.buf,
        data_offset,
        file_len: data_offset + mem_len,
        page_size: p.page_size,
    }
}

#[allow(clippy::too_many_arguments)]
fn phdr_entry(
    w: &mut W,
    ptype: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    size: u64,
    align: u64,
) {
    if w.abi.elf64 {
        w.u32(ptype);
        w.u32(flags);
        w.u64(offset);
        w.u64(vaddr);
        w.u64(paddr);
        w.u64(size);
        w.u64(size);
        w.u64(align);
    } else {
        // ELF32 sizes overflow above 4 GiB (PAE); crash uses the offset rule instead (docs/vmcore.md, Layout 3).
        w.u32(ptype);
        w.u32(offset as u32);
        w.u32(vaddr as u32);
        w.u32(paddr as u32);
        w.u32(size.min(u32::MAX as u64) as u32);
        w.u32(size.min(u32::MAX as u64) as u32);
        w.u32(flags);
        w.u32(align as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(m: u16) -> CoreParams {
        CoreParams {
            machine: m,
            page_size: 4096,
            nr_pages: 100,
            page_offset: 0xffff_8100_0000_0000,
            task_struct: 0xffff_8100_1234_5678,
            regs: (0..gregset_size(m).unwrap() as u8).collect(),
        }
    }

    fn u32le(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64le(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn x86_64_header_matches_netdump_rules() {
        let h = build(&params(machine::X86_64));
        let b = &h.bytes;
        assert_eq!(&b[0..7], b"\x7fELF\x02\x01\x01");
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 4);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 62);
        assert_eq!(u16::from_le_bytes([b[56], b[57]]), 2); // e_phnum
        // phdr[0] NOTE, phdr[1] LOAD
        assert_eq!(u32le(b, 64), PT_NOTE);
        assert_eq!(u32le(b, 120), PT_LOAD);
        let load_off = u64le(b, 120 + 8);
        assert_eq!(load_off % 4096, 0);
        assert_eq!(load_off, h.data_offset);
        assert_eq!(u64le(b, 120 + 48), 4096); // p_align
        assert_eq!(u64le(b, 120 + 32), 100 * 4096);
        // first note: namesz 4, PRSTATUS 336 bytes, pr_reg at 112
        let n = u64le(b, 64 + 8) as usize;
        assert_eq!(u32le(b, n), 4);
        assert_eq!(u32le(b, n + 4), 336);
        assert_eq!(u32le(b, n + 8), NT_PRSTATUS);
        assert_eq!(&b[n + 12..n + 16], b"CORE");
        assert_eq!(b[n + 16 + 112], 0);
        assert_eq!(b[n + 16 + 113], 1);
        let t = n + 16 + 336;
        assert_eq!(u32le(b, t + 8), NT_TASKSTRUCT);
        assert_eq!(u32le(b, t + 4), 8);
        assert_eq!(u64le(b, t + 16), 0xffff_8100_1234_5678);
        assert_eq!(h.file_len, h.data_offset + 100 * 4096);
    }

    #[test]
    fn i386_header_is_elf32_with_144_byte_prstatus() {
        let h = build(&params(machine::I386));
        let b = &h.bytes;
        assert_eq!(b[4], 1);
        assert_eq!(u32le(b, 52), PT_NOTE);
        assert_eq!(u32le(b, 84), PT_LOAD);
        assert_eq!(u32le(b, 84 + 4) as u64, h.data_offset);
        assert_eq!(u32le(b, 84 + 28), 4096);
        let n = u32le(b, 52 + 4) as usize;
        assert_eq!(u32le(b, n + 4), 144);
        // crash: pr_reg = desc_end - 68 - 4
        let desc_end = n + 16 + 144;
        assert_eq!(&b[desc_end - 72..desc_end - 4], &params(3).regs[..]);
    }

    #[test]
    fn ppc64_is_big_endian() {
        let h = build(&params(machine::PPC64));
        assert_eq!(h.bytes[5], 2);
        assert_eq!(&h.bytes[18..20], &[0, 21]);
    }
}
