//! Live capture from an AF_PACKET socket with a TPACKET_V3 receive ring (`PACKET_RX_RING`), optionally one
//! member of a `PACKET_FANOUT` group.
//!
//! The kernel writes frames into fixed-size blocks of a ring shared with this process by `mmap`; a block is
//! handed over (`TP_STATUS_USER` in its header) when it is full or its timeout expired, and handed back by writing
//! `TP_STATUS_KERNEL`. Reading costs no system call while blocks are ready, and one `poll` otherwise.
//!
//! Block parsing (`parse_block`) is a pure function over bytes, bounds-checked at every step, so a damaged block
//! (never seen from a kernel, but cheap to guard) is counted and skipped rather than read out of bounds; the unit
//! tests feed it hand-built blocks.

use std::io;
use std::ptr;

// linux/if_packet.h, linux/if_ether.h, asm-generic/socket.h
pub const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_RX_RING: libc::c_int = 5;
pub const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TPACKET_V3: libc::c_int = 2;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
const SO_ATTACH_FILTER: libc::c_int = 26;
/// `ret #0` (BPF_RET | BPF_K, k = 0): a classic BPF program of one encoded `struct sock_filter` that accepts no frame.
static DROP_ALL: [u8; 8] = {
    let code = 0x06u16.to_ne_bytes();
    [code[0], code[1], 0, 0, 0, 0, 0, 0]
};

pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1;
pub const TP_STATUS_VLAN_VALID: u32 = 0x10;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;

/// Offsets in `struct tpacket_block_desc` (version, offset_to_priv, then `struct tpacket_hdr_v1`).
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
const BD_LEN: usize = 20;
pub const BD_HDR_LEN: usize = 48;
/// Offsets in `struct tpacket3_hdr`; the `struct sockaddr_ll` follows at TPACKET_ALIGN(sizeof) = 48.
const H_NEXT: usize = 0;
const H_SEC: usize = 4;
const H_NSEC: usize = 8;
const H_SNAPLEN: usize = 12;
const H_LEN: usize = 16;
const H_STATUS: usize = 20;
const H_MAC: usize = 24;
const H_VLAN_TCI: usize = 32;
const H_VLAN_TPID: usize = 36;
pub const H_LEN_MIN: usize = 48;
const SLL_PKTTYPE: usize = H_LEN_MIN + 10;

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

/// One frame of a block, as the meter wants it.
pub struct RingFrame<'a> {
    pub ts_ns: i64,
    pub data: &'a [u8],
    pub wire: u64,
    /// (TPID, TCI) of an 802.1Q tag the kernel took off the frame, to be put back.
    pub vlan: Option<(u16, u16)>,
    pub outgoing: bool,
}

/// Frames of one retired block, in order; stops at the first header that does not fit the block and returns
/// (frames delivered, whether the block was damaged).
pub fn parse_block<F: FnMut(RingFrame)>(block: &[u8], mut f: F) -> (u32, bool) {
    let (Some(num), Some(first), Some(blen)) = (
        rd32(block, BD_NUM_PKTS),
        rd32(block, BD_FIRST),
        rd32(block, BD_LEN),
    ) else {
        return (0, true);
    };
    let end = (blen as usize).min(block.len());
    let mut off = first as usize;
    let mut n = 0u32;
    while n < num {
        if off < BD_HDR_LEN || off + H_LEN_MIN > end {
            return (n, true);
        }
        let h = &block[off..end];
        let (Some(next), Some(sec), Some(nsec), Some(snap), Some(len), Some(status), Some(mac)) = (
            rd32(h, H_NEXT),
            rd32(h, H_SEC),
            rd32(h, H_NSEC),
            rd32(h, H_SNAPLEN),
            rd32(h, H_LEN),
            rd32(h, H_STATUS),
            rd16(h, H_MAC),
        ) else {
            return (n, true);
        };
        let start = mac as usize;
        let stop = start + snap as usize;
        if start < H_LEN_MIN || stop > h.len() {
            return (n, true);
        }
        let vlan = if status & TP_STATUS_VLAN_VALID != 0 {
            let tci = rd16(h, H_VLAN_TCI).unwrap_or(0);
            let tpid = rd16(h, H_VLAN_TPID).unwrap_or(0);
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID == 0 || tpid == 0 {
                ETH_P_8021Q
            } else {
                tpid
            };
            Some((tpid, tci))
        } else {
            None
        };
        let outgoing = start > SLL_PKTTYPE && h[SLL_PKTTYPE] == PACKET_OUTGOING;
        f(RingFrame {
            ts_ns: sec as i64 * 1_000_000_000 + nsec as i64,
            data: &h[start..stop],
            wire: len as u64,
            vlan,
            outgoing,
        });
        n += 1;
        if n < num {
            if next == 0 {
                return (n, true);
            }
            off += next as usize;
        }
    }
    (n, false)
}

/// Ring geometry and socket options.
pub struct RingConfig {
    pub ifindex: i32,
    pub block_size: u32,
    pub block_count: u32,
    pub block_timeout_ms: u32,
    /// Encoded `struct sock_filter` array (the snap length is the filter's return value).
    pub filter: Vec<u8>,
    /// Join this PACKET_FANOUT_HASH group; 0 asks the kernel for a group id no other group of the network
    /// namespace has (`PACKET_FANOUT_FLAG_UNIQUEID`), which the other rings of the group then join by id.
    pub fanout_group: Option<u16>,
    pub fanout_defrag: bool,
    pub promisc: bool,
    pub ignore_outgoing: bool,
}

/// Kernel counters of the socket, summed over reads (PACKET_STATISTICS resets them on every read).
#[derive(Default, Clone, Copy)]
pub struct RingStats {
    pub packets: u64,
    pub drops: u64,
    pub freeze_q_cnt: u64,
}

/// An AF_PACKET socket and the ring mapped from it, released together (unmapped, then closed). Shared with the
/// benchmark's sender (src/bin/gwtel-send.rs), which maps a transmit ring the same way.
pub struct PacketSocket {
    pub fd: libc::c_int,
    pub map: *mut u8,
    pub map_len: usize,
}

impl PacketSocket {
    /// A raw AF_PACKET socket that receives nothing (protocol 0) until bound.
    pub fn new() -> RingResult<PacketSocket> {
        // SAFETY: plain system call; the descriptor is owned by the PacketSocket (closed in Drop).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(last_err("socket(AF_PACKET)"));
        }
        Ok(PacketSocket {
            fd,
            map: ptr::null_mut(),
            map_len: 0,
        })
    }

    pub fn setopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        val: &T,
        what: &str,
    ) -> RingResult<()> {
        // SAFETY: `val` points to a live T of the size passed; the kernel copies it and keeps no pointer.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                level,
                name,
                val as *const T as *const libc::c_void,
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(last_err(what));
        }
        Ok(())
    }

    /// Map the `len` bytes of ring the kernel allocated for the socket, locked in memory when allowed.
    pub fn map(&mut self, len: usize) -> RingResult<()> {
        let mmap = |flags| {
            // SAFETY: maps the socket's ring; unmapped in Drop before the socket is closed.
            unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    self.fd,
                    0,
                )
            }
        };
        let mut m = mmap(libc::MAP_SHARED | libc::MAP_LOCKED);
        if m == libc::MAP_FAILED {
            // MAP_LOCKED needs CAP_IPC_LOCK or RLIMIT_MEMLOCK room; an unlocked ring works as well.
            m = mmap(libc::MAP_SHARED);
            if m == libc::MAP_FAILED {
                return Err(last_err("mmap of the ring"));
            }
        }
        self.map = m as *mut u8;
        self.map_len = len;
        Ok(())
    }

    /// Bind to interface `ifindex` for `protocol` (host order; 0 to send only).
    pub fn bind(&self, ifindex: i32, protocol: u16) -> RingResult<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                self.fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(last_err("bind"));
        }
        Ok(())
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the mapping and descriptor belong to this socket and are released once.
        unsafe {
            if !self.map.is_null() {
                libc::munmap(self.map as *mut libc::c_void, self.map_len);
            }
            libc::close(self.fd);
        }
    }
}

pub struct Ring {
    sock: PacketSocket,
    block_size: usize,
    block_count: usize,
    cur: usize,
    pub stats: RingStats,
    pub link_down: u64,
    pub damaged_blocks: u64,
    /// The fanout group the ring is in (the kernel's choice when asked for a unique one).
    pub fanout_group: Option<u16>,
}

// SAFETY: the ring is owned by one Engine; the mapping and descriptor are only used through &mut self.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

/// A failed system call: its errno (for the caller's decisions) and what was being done.
#[derive(Debug)]
pub struct RingError {
    pub errno: i32,
    pub msg: String,
}

pub type RingResult<T> = Result<T, RingError>;

pub fn last_err(what: &str) -> RingError {
    let e = io::Error::last_os_error();
    RingError {
        errno: e.raw_os_error().unwrap_or(0),
        msg: format!("{what}: {e}"),
    }
}

fn invalid(msg: &str) -> RingError {
    RingError {
        errno: libc::EINVAL,
        msg: msg.to_string(),
    }
}

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const u8,
}

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

const FRAME_SIZE: u32 = 2048; // required by the kernel's geometry checks; V3 frames have variable length

impl Ring {
    /// Socket, filter, ring, bind, fanout, in the order that keeps other interfaces' and filtered-out packets
    /// out of the ring: the socket starts with protocol 0 (receives nothing) until bound to the interface. A ring
    /// that joins a fanout group is bound with a filter that drops every frame (see `setup`).
    pub fn open(cfg: &RingConfig) -> RingResult<Ring> {
        let page = 4096u32;
        if cfg.block_size < page || cfg.block_size % page != 0 || !cfg.block_size.is_power_of_two()
        {
            return Err(invalid("block size must be a power of two, at least 4096"));
        }
        if cfg.block_count == 0 || cfg.filter.is_empty() || cfg.filter.len() % 8 != 0 {
            return Err(invalid("bad ring or filter"));
        }
        let mut ring = Ring {
            sock: PacketSocket::new()?,
            block_size: cfg.block_size as usize,
            block_count: cfg.block_count as usize,
            cur: 0,
            stats: RingStats::default(),
            link_down: 0,
            damaged_blocks: 0,
            fanout_group: None,
        };
        ring.setup(cfg)?; // on error, the socket's Drop unmaps and closes it
        Ok(ring)
    }

    /// The kernel accepts PACKET_FANOUT only from a socket bound to the interface with the group's protocol, and
    /// a bound socket receives every frame of the interface by itself until it joins, while the group's other
    /// rings receive the same frames: a frame arriving in between would be counted twice. So a ring that joins a
    /// group is bound with a filter that accepts nothing and gets its own filter once it is a member (the frames
    /// the group hands it between the two system calls are not captured, which a ring that joins later would
    /// not have captured either).
    fn setup(&mut self, cfg: &RingConfig) -> RingResult<()> {
        let prog = SockFprog {
            len: (cfg.filter.len() / 8) as libc::c_ushort,
            filter: cfg.filter.as_ptr(),
        };
        let drop_all = SockFprog {
            len: 1,
            filter: DROP_ALL.as_ptr(),
        };
        let first = if cfg.fanout_group.is_some() {
            &drop_all
        } else {
            &prog
        };
        let sock = &mut self.sock;
        sock.setopt(
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            first,
            "SO_ATTACH_FILTER",
        )?;
        sock.setopt(SOL_PACKET, PACKET_VERSION, &TPACKET_V3, "PACKET_VERSION")?;
        let req = TpacketReq3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: cfg.block_size / FRAME_SIZE * cfg.block_count,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sock.setopt(SOL_PACKET, PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        sock.map(self.block_size * self.block_count)?;
        if cfg.ignore_outgoing {
            // Loopback frames are seen leaving and arriving; keep one copy as libpcap does (Linux >= 4.20;
            // older kernels: parse_block flags outgoing frames and the engine skips them).
            let _ = sock.setopt(
                SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                &1i32,
                "PACKET_IGNORE_OUTGOING",
            );
        }
        sock.bind(cfg.ifindex, ETH_P_ALL)?;
        if let Some(group) = cfg.fanout_group {
            let mut kind = PACKET_FANOUT_HASH;
            if cfg.fanout_defrag {
                kind |= PACKET_FANOUT_FLAG_DEFRAG;
            }
            if group == 0 {
                kind |= PACKET_FANOUT_FLAG_UNIQUEID;
            }
            let arg: u32 = group as u32 | (kind << 16);
            self.sock
                .setopt(SOL_PACKET, PACKET_FANOUT, &arg, "PACKET_FANOUT")?;
            self.sock.setopt(
                libc::SOL_SOCKET,
                SO_ATTACH_FILTER,
                &prog,
                "SO_ATTACH_FILTER",
            )?;
            self.fanout_group = Some(self.fanout_id()?);
        }
        if cfg.promisc {
            let mreq = PacketMreq {
                mr_ifindex: cfg.ifindex,
                mr_type: PACKET_MR_PROMISC,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            self.sock.setopt(
                SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                &mreq,
                "PACKET_ADD_MEMBERSHIP",
            )?;
        }
        Ok(())
    }

    /// The current block, if the kernel handed it over.
    fn ready(&self) -> Option<&[u8]> {
        // SAFETY: cur < block_count, so the block lies inside the mapping; the status word is read volatile
        // because the kernel writes it concurrently, and an acquire fence orders the block's contents after it.
        unsafe {
            let b = self.sock.map.add(self.cur * self.block_size);
            let st = ptr::read_volatile(b.add(BD_STATUS) as *const u32);
            if st & TP_STATUS_USER == 0 {
                return None;
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            Some(std::slice::from_raw_parts(b, self.block_size))
        }
    }

    fn release(&mut self) {
        // SAFETY: as in ready(); the release fence keeps our reads of the block before the hand-back.
        unsafe {
            let b = self.sock.map.add(self.cur * self.block_size);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            ptr::write_volatile(b.add(BD_STATUS) as *mut u32, TP_STATUS_KERNEL);
        }
        self.cur = (self.cur + 1) % self.block_count;
    }

    /// Hand every ready block (at most `max_blocks`) to `f`, waiting up to `timeout_ms` for the first one.
    /// Returns the number of blocks read.
    pub fn read_blocks<F: FnMut(&[u8])>(
        &mut self,
        timeout_ms: i32,
        max_blocks: usize,
        mut f: F,
    ) -> RingResult<usize> {
        let mut n = 0;
        let mut waited = false;
        while n < max_blocks {
            if let Some(b) = self.ready() {
                f(b);
                self.release();
                n += 1;
                continue;
            }
            if n > 0 || waited {
                break;
            }
            waited = true;
            let mut pfd = libc::pollfd {
                fd: self.sock.fd,
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if r < 0 {
                let e = last_err("poll");
                if e.errno == libc::EINTR {
                    break;
                }
                return Err(e);
            }
            if pfd.revents & libc::POLLERR != 0 {
                let err = self.take_error();
                if err == libc::ENETDOWN {
                    self.link_down += 1; // the kernel resumes delivery when the link is up again
                } else if err != 0 {
                    return Err(RingError {
                        errno: err,
                        msg: format!("capture socket: {}", io::Error::from_raw_os_error(err)),
                    });
                }
            }
        }
        Ok(n)
    }

    /// The id of the fanout group the socket is in (getsockopt PACKET_FANOUT: id in the low 16 bits).
    fn fanout_id(&self) -> RingResult<u16> {
        let mut v: u32 = 0;
        let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
        // SAFETY: v and len are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                self.sock.fd,
                SOL_PACKET,
                PACKET_FANOUT,
                &mut v as *mut u32 as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return Err(last_err("getsockopt(PACKET_FANOUT)"));
        }
        Ok((v & 0xFFFF) as u16)
    }

    fn take_error(&self) -> i32 {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: err and len are valid for the kernel to write.
        unsafe {
            libc::getsockopt(
                self.sock.fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            );
        }
        err
    }

    /// Add the kernel's counters since the previous read to `stats`.
    pub fn read_stats(&mut self) -> RingResult<RingStats> {
        let mut s = [0u32; 3]; // struct tpacket_stats_v3
        let mut len = std::mem::size_of_val(&s) as libc::socklen_t;
        // SAFETY: s and len are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                self.sock.fd,
                SOL_PACKET,
                PACKET_STATISTICS,
                s.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return Err(last_err("PACKET_STATISTICS"));
        }
        self.stats.packets += s[0] as u64;
        self.stats.drops += s[1] as u64;
        self.stats.freeze_q_cnt += s[2] as u64;
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel lays it out: descriptor, then frames at TPACKET_ALIGN(16) boundaries.
    pub fn build_block(
        frames: &[(u32, u32, &[u8], u32, Option<(u16, u16)>)],
        size: usize,
    ) -> Vec<u8> {
        let mut b = vec![0u8; size];
        let put32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        let put16 =
            |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
        put32(&mut b, 0, 1);
        put32(&mut b, BD_STATUS, TP_STATUS_USER);
        put32(&mut b, BD_NUM_PKTS, frames.len() as u32);
        put32(&mut b, BD_FIRST, BD_HDR_LEN as u32);
        let mut off = BD_HDR_LEN;
        for (i, (sec, nsec, data, wire, vlan)) in frames.iter().enumerate() {
            let mac = 66usize; // TPACKET_ALIGN(48 + sizeof sockaddr_ll(20)) = 80 in the kernel; any value >= 48 works
            let total = (mac + data.len() + 15) & !15;
            put32(
                &mut b,
                off + H_NEXT,
                if i + 1 < frames.len() {
                    total as u32
                } else {
                    0
                },
            );
            put32(&mut b, off + H_SEC, *sec);
            put32(&mut b, off + H_NSEC, *nsec);
            put32(&mut b, off + H_SNAPLEN, data.len() as u32);
            put32(&mut b, off + H_LEN, *wire);
            let mut st = TP_STATUS_USER;
            if let Some((tpid, tci)) = vlan {
                st |= TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
                put32(&mut b, off + H_VLAN_TCI, *tci as u32);
                put16(&mut b, off + H_VLAN_TPID, *tpid);
            }
            put32(&mut b, off + H_STATUS, st);
            put16(&mut b, off + H_MAC, mac as u16);
            b[off + mac..off + mac + data.len()].copy_from_slice(data);
            off += total;
        }
        put32(&mut b, BD_LEN, off as u32);
        b
    }

    #[test]
    fn frames_come_back_in_order_with_times_lengths_and_tags() {
        let b = build_block(
            &[
                (10, 5, b"abcdef", 60, None),
                (
                    11,
                    999_999_999,
                    b"0123456789abcdefXYZ",
                    1500,
                    Some((0x88a8, 42)),
                ),
                (12, 0, b"", 0, None),
            ],
            4096,
        );
        let mut got = Vec::new();
        let (n, bad) = parse_block(&b, |f| got.push((f.ts_ns, f.data.to_vec(), f.wire, f.vlan)));
        assert_eq!((n, bad), (3, false));
        assert_eq!(got[0], (10_000_000_005, b"abcdef".to_vec(), 60, None));
        assert_eq!(
            got[1],
            (
                11_999_999_999,
                b"0123456789abcdefXYZ".to_vec(),
                1500,
                Some((0x88a8, 42))
            )
        );
        assert_eq!(got[2].0, 12_000_000_000);
    }

    #[test]
    fn vlan_without_tpid_means_8021q() {
        let mut b = build_block(&[(1, 0, b"x", 1, Some((0x88a8, 7)))], 4096);
        let st = TP_STATUS_USER | TP_STATUS_VLAN_VALID;
        b[BD_HDR_LEN + H_STATUS..BD_HDR_LEN + H_STATUS + 4].copy_from_slice(&st.to_ne_bytes());
        let mut tags = Vec::new();
        parse_block(&b, |f| tags.push(f.vlan));
        assert_eq!(tags, vec![Some((ETH_P_8021Q, 7))]);
    }

    #[test]
    fn a_frame_past_the_block_end_stops_the_block() {
        let mut b = build_block(&[(1, 0, b"abc", 3, None), (2, 0, b"def", 3, None)], 4096);
        // second frame's snap length runs past the block
        let second = BD_HDR_LEN + ((66 + 3 + 15) & !15);
        b[second + H_SNAPLEN..second + H_SNAPLEN + 4].copy_from_slice(&100_000u32.to_ne_bytes());
        let mut n_seen = 0;
        let (n, bad) = parse_block(&b, |_| n_seen += 1);
        assert_eq!((n, bad, n_seen), (1, true, 1));
    }

    #[test]
    fn a_zero_next_offset_before_the_last_frame_is_damage() {
        let mut b = build_block(&[(1, 0, b"abc", 3, None), (2, 0, b"def", 3, None)], 4096);
        b[BD_HDR_LEN..BD_HDR_LEN + 4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse_block(&b, |_| {}), (1, true));
    }

    #[test]
    fn short_or_empty_blocks() {
        assert_eq!(parse_block(&[], |_| {}), (0, true));
        let b = build_block(&[], 4096);
        assert_eq!(parse_block(&b, |_| {}), (0, false));
        let mut b = build_block(&[(1, 0, b"abc", 3, None)], 4096);
        b[BD_FIRST..BD_FIRST + 4].copy_from_slice(&4090u32.to_ne_bytes());
        assert_eq!(parse_block(&b, |_| {}), (0, true));
    }

    #[test]
    fn outgoing_frames_are_flagged() {
        let mut b = build_block(&[(1, 0, b"abc", 3, None)], 4096);
        b[BD_HDR_LEN + SLL_PKTTYPE] = PACKET_OUTGOING;
        let mut out = Vec::new();
        parse_block(&b, |f| out.push(f.outgoing));
        assert_eq!(out, vec![true]);
    }
}
