//! The cgroup v2 device filter: device rules compiled into a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, loaded and attached with bpf(2).
//!
//! v2 has no `devices.allow`; the kernel asks an eBPF program attached to the
//! cgroup on each device open/mknod. The program is emitted here by a small
//! assembler (a handful of instructions per rule, no helpers, no maps) rather than
//! through a BPF library: it is a fixed shape, and this keeps the container start
//! path free of a heavy dependency.
//!
//! Logic: the rules are checked from the last to the first and the first hit
//! decides, so the last matching rule wins, as the v1 writes behave; no hit denies.
//! An allow rule matches when it grants every access asked for, a deny rule when it
//! refuses any of them. (v1 also merges partial allows — `r` then `w` grants `rw` —
//! which this does not; runtimes emit whole-access rules.)

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::devices::{DeviceKind, DeviceRule, ACCESS_ALL};
use super::CgroupError;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode pieces from linux/bpf_common.h and linux/bpf.h.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// `struct bpf_cgroup_dev_ctx` offsets and its encodings.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;

// Registers as the program uses them.
const R0: u8 = 0;
const R1: u8 = 1; // context on entry, scratch afterwards
const R2: u8 = 2; // device type
const R3: u8 = 3; // access asked for
const R4: u8 = 4; // major
const R5: u8 = 5; // minor

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}
fn mov32_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}
fn and32(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
}
fn rsh32(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
}
fn mov64_imm(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
}
fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
}
fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

/// Compile rules (in spec order) into the device program.
pub fn compile(rules: &[DeviceRule]) -> Result<Vec<Insn>, CgroupError> {
    let mut prog = vec![
        load_u32(R2, R1, CTX_ACCESS_TYPE),
        and32(R2, 0xffff),
        load_u32(R3, R1, CTX_ACCESS_TYPE),
        rsh32(R3, 16),
        load_u32(R4, R1, CTX_MAJOR),
        load_u32(R5, R1, CTX_MINOR),
    ];
    for rule in rules.iter().rev() {
        // Conditions jump past the block's end on mismatch; offsets are filled in
        // once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Block => block.push(jne_imm(R2, DEV_BLOCK as i32, 0)),
            DeviceKind::Char => block.push(jne_imm(R2, DEV_CHAR as i32, 0)),
        }
        if rule.access != ACCESS_ALL {
            block.push(mov32_reg(R1, R3));
            if rule.allow {
                // Hit only if nothing outside the rule's access is asked for.
                block.push(and32(R1, i32::from(!rule.access & ACCESS_ALL)));
                block.push(jne_imm(R1, 0, 0));
            } else {
                // Hit if any refused access is asked for: skip when none is.
                block.push(and32(R1, i32::from(rule.access)));
                block.push(insn(BPF_JMP | BPF_JEQ | BPF_K, R1, 0, 0, 0));
            }
        }
        if let Some(major) = rule.major {
            block.push(jne_imm(R4, to_imm(major, "major")?, 0));
        }
        if let Some(minor) = rule.minor {
            block.push(jne_imm(R5, to_imm(minor, "minor")?, 0));
        }
        block.push(mov64_imm(R0, i32::from(rule.allow)));
        block.push(exit());
        let len = block.len();
        if len == 2 {
            // Matches every access: rules before it can never decide, and the
            // verifier refuses unreachable instructions, so the program ends here.
            prog.extend(block);
            return Ok(prog);
        }
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code & 0x07 == BPF_JMP && ins.code != BPF_JMP | BPF_EXIT {
                // Jump to the first instruction after the block.
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(mov64_imm(R0, 0));
    prog.push(exit());
    Ok(prog)
}

fn to_imm(n: u32, what: &'static str) -> Result<i32, CgroupError> {
    i32::try_from(n).map_err(|_| CgroupError::InvalidValue {
        what,
        reason: format!("device number {n} is too large"),
    })
}

/// A loaded program; closing the fd does not detach it once attached.
#[derive(Debug)]
pub struct Program(OwnedFd);

/// `union bpf_attr`, large enough for every command used here; the kernel wants
/// the bytes it does not know to be zero.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        BpfAttr([0; 128])
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf(cmd: libc::c_long, attr: &mut BpfAttr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable buffer of the size passed; every pointer
    // stored in it by the callers points to memory that outlives this call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BpfAttr,
            std::mem::size_of::<BpfAttr>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn bpf_error(op: &'static str, source: std::io::Error) -> CgroupError {
    CgroupError::Bpf {
        op,
        source,
        log: String::new(),
    }
}

fn owned_fd(raw: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new fd to us, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw as i32) }
}

/// Load a device program into the kernel (BPF_PROG_LOAD).
pub fn load(prog: &[Insn]) -> Result<Program, CgroupError> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = BpfAttr::new();
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, prog.len() as u32);
    attr.put_u64(8, prog.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(Program(owned_fd(fd))),
        Err(first) => {
            // Load again with the verifier log on, only to explain the refusal.
            attr.put_u32(24, 1);
            attr.put_u32(28, log.len() as u32);
            attr.put_u64(32, log.as_mut_ptr() as u64);
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                op: "load device program",
                source: first,
                log: if text.is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {text})")
                },
            })
        }
    }
}

/// Attach `program` to the cgroup directory `dir`, then detach the programs that
/// were there before, so an update replaces the filter instead of stacking on it
/// (attached programs must all allow an access).
pub fn attach_replacing(dir: &Path, program: &Program) -> Result<(), CgroupError> {
    let cgroup = std::fs::File::open(dir).map_err(|e| super::fs::io_error(dir, e))?;
    let previous = query(&cgroup)?;
    let mut attr = BpfAttr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, program.0.as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| bpf_error("attach device program", e))?;
    for id in previous {
        let mut get = BpfAttr::new();
        get.put_u32(0, id);
        let old = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned_fd(fd),
            // Already gone: nothing to detach.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_error("get previous device program", e)),
        };
        let mut detach = BpfAttr::new();
        detach.put_u32(0, cgroup.as_raw_fd() as u32);
        detach.put_u32(4, old.as_raw_fd() as u32);
        detach.put_u32(8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(bpf_error("detach previous device program", e)),
        }
    }
    Ok(())
}

/// IDs of the device programs attached to the cgroup itself.
fn query(cgroup: &std::fs::File) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = BpfAttr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, BPF_CGROUP_DEVICE);
    attr.put_u64(16, ids.as_mut_ptr() as u64);
    attr.put_u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| bpf_error("query device programs", e))?;
    let count = (attr.get_u32(24) as usize).min(ids.len());
    ids.truncate(count);
    Ok(ids)
}

/// Run a compiled device program on one access, as the kernel would: returns
/// whether the access is allowed. Covers only the instructions [`compile`] emits.
#[cfg(test)]
pub fn interpret(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> bool {
    let ctx = [(access << 16) | kind, major, minor];
    let mut regs = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        let dst = (ins.regs & 0x0f) as usize;
        let src = (ins.regs >> 4) as usize;
        pc += 1;
        match ins.code {
            0x61 => {
                assert_eq!(src, 1, "loads only from the context");
                regs[dst] = u64::from(ctx[(ins.off / 4) as usize]);
            }
            0x54 => regs[dst] = (regs[dst] as u32 & ins.imm as u32) as u64,
            0x74 => regs[dst] = ((regs[dst] as u32) >> ins.imm) as u64,
            0xbc => regs[dst] = regs[src] as u32 as u64,
            0xb7 => regs[dst] = ins.imm as i64 as u64,
            0x55 => {
                if regs[dst] != ins.imm as i64 as u64 {
                    pc = (pc as i64 + i64::from(ins.off)) as usize;
                }
            }
            0x15 => {
                if regs[dst] == ins.imm as i64 as u64 {
                    pc = (pc as i64 + i64::from(ins.off)) as usize;
                }
            }
            0x95 => return regs[0] == 1,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}
