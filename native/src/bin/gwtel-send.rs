//! gwtel-send: offer the frames of a capture file on an interface, as fast as the kernel takes them or at a
//! requested rate, from a `PACKET_TX_RING` (TPACKET_V2) with `PACKET_QDISC_BYPASS`.
//!
//! The benchmark's and the tests' traffic source (bench/capture.py, tests/integration/test_live_capture.py):
//! tcpreplay sends one frame per system call and reached about 0.3M packets/s on the veth pair of the bench. Here
//! the frames are copied once into the ring (when the capture fits, the ring holds it whole and later loops only
//! write each slot's status word), and one `sendto` hands the kernel every frame marked since the previous one.
//!
//! A separate binary rather than a function of the Python module: it runs inside the sender's network namespace as
//! its own process (pinned to its own core, its CPU time its own), and it needs neither Python nor the engine.
//!
//! Usage: `gwtel-send --iface IF --pcap FILE [--loops N] [--pps RATE] [--threads T] [--cpus C,...] [--ring-mib M]`.
//! Prints one JSON line: frames sent, seconds, rate, frames skipped (not Ethernet or longer than the MTU allows)
//! and the process's user and system CPU seconds.

use std::io;
use std::ptr;
use std::time::Instant;

// The engine's capture reader and packet socket, compiled into this binary (it links neither Python nor the
// engine); what it does not use of them is dead code here.
#[allow(dead_code)]
#[path = "../reader.rs"]
mod reader;
#[allow(dead_code)]
#[path = "../ring.rs"]
mod ring;

use ring::{PACKET_VERSION, SOL_PACKET};

// linux/if_packet.h
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_VNET_HDR: libc::c_int = 15;
/// `struct virtio_net_hdr` before each frame: its `hdr_len` (bytes 2..4, little endian) is how much of the frame
/// the kernel copies into the socket buffer's head. Without it the kernel copies the Ethernet header and attaches
/// the rest as pages of the ring, which veth must then copy into a freshly cleared page per frame
/// (`skb_copy_ubufs`: a page allocation, a page clear and a copy; the largest cost measured with `perf`).
const VNET_HDR_LEN: usize = 10;
const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// Frame data starts after the aligned `struct tpacket2_hdr` (32 bytes) when `PACKET_TX_HAS_OFF` is off.
const TX_DATA_OFF: usize = 32;
const H_LEN: usize = 4; // tpacket2_hdr.tp_len
const LINKTYPE_ETHERNET: u32 = 1;
const ETH_HLEN: usize = 14;
const PAGE: usize = 4096;
/// A ring that stays full this long means the interface sends nothing (its queue is stopped): give up.
const STALL_S: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    frame_size: usize,
    block_size: usize,
    block_nr: usize,
}

impl Geometry {
    fn slots(&self) -> usize {
        self.block_size / self.frame_size * self.block_nr
    }
}

/// Ring geometry for frames of up to `max_len` bytes: slots of a power-of-two size (so a page holds whole slots),
/// as many as the capture has frames (it is then copied once), at most `max_bytes` of ring.
fn geometry(max_len: usize, frames: usize, max_bytes: usize) -> Geometry {
    let frame_size = (TX_DATA_OFF + VNET_HDR_LEN + max_len)
        .next_power_of_two()
        .max(64);
    let block_size = frame_size.max(PAGE) * 64; // 64 pages or 64 slots per block: few blocks, small allocations
    let per_block = block_size / frame_size;
    let want = frames.div_ceil(per_block).max(1);
    let cap = (max_bytes / block_size).max(2);
    Geometry {
        frame_size,
        block_size,
        block_nr: want.min(cap),
    }
}

/// Frames due `elapsed_ns` after the start at `pps` frames per second (all of them when `pps` is 0).
fn due(elapsed_ns: u128, pps: u64, total: u64) -> u64 {
    if pps == 0 {
        return total;
    }
    let n = elapsed_ns * pps as u128 / 1_000_000_000 + 1;
    n.min(total as u128) as u64
}

struct Frames {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
    skipped: u64,
}

/// The Ethernet frames of a capture that fit `max_len` bytes (the interface's MTU plus its header); others are
/// counted as skipped.
fn load(path: &str, max_len: usize) -> Result<Frames, String> {
    let buf = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut r = reader::Reader::new(false);
    let mut out = Frames {
        bytes: Vec::new(),
        spans: Vec::new(),
        skipped: 0,
    };
    r.each_frame(&buf, true, |_ts, lt, data, _wire| {
        if lt != LINKTYPE_ETHERNET || data.len() < ETH_HLEN || data.len() > max_len {
            out.skipped += 1;
            return;
        }
        out.spans.push((out.bytes.len(), data.len()));
        out.bytes.extend_from_slice(data);
    });
    if let Some(e) = r.error {
        return Err(format!("{path}: {}", e.reason));
    }
    Ok(out)
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn ring_err(e: ring::RingError) -> String {
    e.msg
}

struct TxRing {
    sock: ring::PacketSocket,
    geo: Geometry,
}

impl TxRing {
    fn open(ifindex: i32, geo: Geometry) -> Result<TxRing, String> {
        let mut sock = ring::PacketSocket::new().map_err(ring_err)?;
        let opt = |name, val: &i32, what| sock.setopt(SOL_PACKET, name, val, what);
        opt(PACKET_VERSION, &TPACKET_V2, "PACKET_VERSION").map_err(ring_err)?;
        opt(PACKET_VNET_HDR, &1, "PACKET_VNET_HDR").map_err(ring_err)?;
        // Straight to the driver: no qdisc enqueue and dequeue per frame (the benchmark wants no shaping).
        opt(PACKET_QDISC_BYPASS, &1, "PACKET_QDISC_BYPASS").map_err(ring_err)?;
        let req: [u32; 4] = [
            geo.block_size as u32,
            geo.block_nr as u32,
            geo.frame_size as u32,
            geo.slots() as u32,
        ];
        sock.setopt(SOL_PACKET, PACKET_TX_RING, &req, "PACKET_TX_RING")
            .map_err(ring_err)?;
        sock.map(geo.block_size * geo.block_nr).map_err(ring_err)?;
        sock.bind(ifindex, 0).map_err(ring_err)?; // protocol 0: the socket receives nothing, it only sends
        Ok(TxRing { sock, geo })
    }

    fn slot(&self, i: usize) -> *mut u8 {
        let per_block = self.geo.block_size / self.geo.frame_size;
        // SAFETY (for the callers' accesses): i < slots, so the slot lies inside the mapping.
        unsafe {
            self.sock
                .map
                .add(i / per_block * self.geo.block_size + i % per_block * self.geo.frame_size)
        }
    }

    fn status(&self, i: usize) -> u32 {
        // SAFETY: the status word is the slot's first u32; the kernel writes it concurrently (volatile).
        let s = unsafe { ptr::read_volatile(self.slot(i) as *const u32) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        s
    }

    fn fill(&mut self, i: usize, data: &[u8]) {
        // SAFETY: the slot is ours (status AVAILABLE) and data fits it (geometry from the longest frame).
        unsafe {
            let s = self.slot(i);
            let mut vnet = [0u8; VNET_HDR_LEN]; // no checksum offload, no segmentation: the whole frame in the head
            vnet[2..4].copy_from_slice(&(data.len() as u16).to_le_bytes());
            ptr::copy_nonoverlapping(vnet.as_ptr(), s.add(TX_DATA_OFF), VNET_HDR_LEN);
            ptr::copy_nonoverlapping(data.as_ptr(), s.add(TX_DATA_OFF + VNET_HDR_LEN), data.len());
            ptr::write_volatile(s.add(H_LEN) as *mut u32, (VNET_HDR_LEN + data.len()) as u32);
        }
    }

    fn request(&mut self, i: usize) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        // SAFETY: as in status().
        unsafe { ptr::write_volatile(self.slot(i) as *mut u32, TP_STATUS_SEND_REQUEST) };
    }

    /// Hand the kernel every requested slot; `wait`: return once it has sent them all.
    fn kick(&self, wait: bool) -> Result<(), String> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        loop {
            // SAFETY: no buffer: the frames are in the ring.
            let r = unsafe { libc::sendto(self.sock.fd, ptr::null(), 0, flags, ptr::null(), 0) };
            if r >= 0 {
                return Ok(());
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                // Every slot in flight (the device queue is full): the caller polls its next slot.
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => return Ok(()),
                _ => return Err(os_err("sendto")),
            }
        }
    }
}

struct Args {
    iface: String,
    pcap: String,
    loops: u64,
    pps: u64,
    cpus: Vec<usize>,
    threads: usize,
    ring_mib: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        iface: String::new(),
        pcap: String::new(),
        loops: 1,
        pps: 0,
        cpus: Vec::new(),
        threads: 1,
        ring_mib: 256,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("{k} {v}: not a number"))
        };
        match k.as_str() {
            "--iface" => a.iface = v.clone(),
            "--pcap" => a.pcap = v.clone(),
            "--loops" => a.loops = num()?,
            "--pps" => a.pps = num()?,
            "--cpus" => {
                a.cpus = v
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--cpus {v}: a list of CPU numbers such as 0,1"))?
            }
            "--threads" => a.threads = num()?.max(1) as usize,
            "--ring-mib" => a.ring_mib = num()?.max(1) as usize,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.iface.is_empty() || a.pcap.is_empty() {
        return Err("usage: gwtel-send --iface IF --pcap FILE [--loops N] [--pps RATE] [--threads T] [--cpus C,...] [--ring-mib M]".into());
    }
    Ok(a)
}

fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(os_err("sched_setaffinity"));
        }
    }
    Ok(())
}

fn mtu(iface: &str) -> Result<usize, String> {
    let p = format!("/sys/class/net/{iface}/mtu");
    let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    s.trim().parse().map_err(|_| format!("{p}: {s:?}"))
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: ru is written by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// Send `loops` times the frames of `spans` (places in `bytes`) in order; returns the frames sent.
fn send(
    ring: &mut TxRing,
    bytes: &[u8],
    spans: &[(usize, usize)],
    loops: u64,
    pps: u64,
) -> Result<u64, String> {
    let n = spans.len();
    let slots = ring.geo.slots();
    let total = n as u64 * loops;
    // What each slot holds (frame index), so a frame already in its slot is not copied again.
    let mut held = vec![usize::MAX; slots];
    // Paced: wake every 100 µs or every 64 frames' worth, whichever is longer (a sleep is not much finer, and
    // each wake-up costs a system call or two).
    let tick_ns = 64_000_000_000u64
        .checked_div(pps)
        .map_or(0, |t| t.max(100_000));
    let start = Instant::now();
    let mut queued = 0u64;
    let mut stalled: Option<Instant> = None;
    while queued < total {
        let target = due(start.elapsed().as_nanos(), pps, total);
        let mut marked = 0usize;
        while queued < target {
            let slot = (queued % slots as u64) as usize;
            let st = ring.status(slot);
            if st == TP_STATUS_WRONG_FORMAT {
                return Err(format!(
                    "the kernel refused frame {} of the capture",
                    queued % n as u64
                ));
            }
            if st != TP_STATUS_AVAILABLE {
                // The ring is full: hand over what was marked, or wait for the kernel to finish some.
                ring.kick(marked == 0)?;
                marked = 0;
                if stalled.get_or_insert_with(Instant::now).elapsed().as_secs() >= STALL_S {
                    return Err(format!(
                        "the interface took no frame for {STALL_S} s (link down, or its peer?)"
                    ));
                }
                continue;
            }
            stalled = None;
            let f = (queued % n as u64) as usize;
            if held[slot] != f {
                let (off, len) = spans[f];
                ring.fill(slot, &bytes[off..off + len]);
                held[slot] = f;
            }
            ring.request(slot);
            marked += 1;
            queued += 1;
            if marked == slots / 2 {
                ring.kick(false)?;
                marked = 0;
            }
        }
        if marked > 0 {
            ring.kick(false)?;
        }
        if pps > 0 && queued < total {
            // Sleep until a tick's worth of frames is due: one wake-up and one kick per batch.
            let batch = (tick_ns as u128 * pps as u128 / 1_000_000_000).max(1);
            let next = ((queued as u128 + batch - 1) * 1_000_000_000 / pps as u128) as i128;
            let wait = next - start.elapsed().as_nanos() as i128;
            if wait > 0 {
                std::thread::sleep(std::time::Duration::from_nanos(wait as u64));
            }
        }
    }
    ring.kick(true)?;
    // Every slot back with user space: the kernel has sent them all.
    let end = Instant::now();
    for i in 0..slots {
        while ring.status(i) != TP_STATUS_AVAILABLE {
            if ring.status(i) == TP_STATUS_WRONG_FORMAT {
                return Err("the kernel refused a frame".into());
            }
            if end.elapsed().as_secs() >= STALL_S {
                return Err(format!(
                    "frames still unsent {STALL_S} s after the last one was queued"
                ));
            }
            ring.kick(true)?;
            std::thread::yield_now();
        }
    }
    Ok(queued)
}

/// What one sending thread does: its own ring, a contiguous part of the capture, its share of the rate.
fn sender(
    ifindex: i32,
    frames: &Frames,
    part: std::ops::Range<usize>,
    a: &Args,
    threads: usize,
    cpu: Option<usize>,
    ready: &std::sync::Barrier,
) -> Result<u64, String> {
    let opened = (|| {
        if let Some(c) = cpu {
            pin(c)?;
        }
        let spans = &frames.spans[part];
        let longest = spans.iter().map(|s| s.1).max().unwrap_or(ETH_HLEN);
        let geo = geometry(longest, spans.len(), (a.ring_mib << 20) / threads);
        Ok::<_, String>((TxRing::open(ifindex, geo)?, spans))
    })();
    ready.wait(); // every ring is set up (its pages cleared) before any clock starts
    let (mut ring, spans) = opened?;
    let pps = a.pps.div_ceil(threads as u64);
    send(&mut ring, &frames.bytes, spans, a.loops, pps)
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let max_len = mtu(&a.iface)? + ETH_HLEN;
    let frames = load(&a.pcap, max_len)?;
    let threads = a.threads.clamp(1, frames.spans.len().max(1));
    if frames.spans.is_empty() {
        return Err(format!("{}: no Ethernet frame to send", a.pcap));
    }
    let cname = std::ffi::CString::new(a.iface.clone()).map_err(|_| "bad interface name")?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("interface {:?} does not exist", a.iface));
    }
    let n = frames.spans.len();
    let ready = std::sync::Barrier::new(threads + 1);
    let (sent, secs, cpu) = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let part = n * t / threads..n * (t + 1) / threads;
                let cpu = (!a.cpus.is_empty()).then(|| a.cpus[t % a.cpus.len()]);
                let (f, args, rd) = (&frames, &a, &ready);
                sc.spawn(move || sender(ifindex as i32, f, part, args, threads, cpu, rd))
            })
            .collect();
        ready.wait();
        let (u0, s0) = cpu_times();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut err = None;
        for h in handles {
            match h
                .join()
                .unwrap_or_else(|_| Err("a sending thread panicked".into()))
            {
                Ok(k) => sent += k,
                Err(e) => err = Some(e),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let (u1, s1) = cpu_times();
        match err {
            Some(e) => Err(e),
            None => Ok((sent, secs, (u1 - u0, s1 - s0))),
        }
    })?;
    println!(
        "{{\"sent\": {sent}, \"seconds\": {secs:.6}, \"pps\": {:.1}, \"skipped\": {}, \"threads\": {threads}, \
         \"capture_frames\": {n}, \"cpu_user_s\": {:.3}, \"cpu_sys_s\": {:.3}}}",
        sent as f64 / secs.max(1e-9),
        frames.skipped,
        cpu.0,
        cpu.1
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gwtel-send: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_holds_a_small_capture_whole_in_page_sized_slots() {
        let g = geometry(96, 10_000, 256 << 20);
        assert_eq!(g.frame_size, 256); // 32 + 10 + 96
        assert_eq!(g.block_size % PAGE, 0);
        assert_eq!(g.block_size % g.frame_size, 0);
        assert!(g.slots() >= 10_000 && g.slots() < 10_000 + g.block_size / g.frame_size);
        let g = geometry(1514, 3, 256 << 20);
        assert_eq!((g.frame_size, g.block_nr), (2048, 1));
    }

    #[test]
    fn a_large_capture_gets_the_ring_limit() {
        let g = geometry(96, 100_000_000, 64 << 20);
        assert_eq!(g.block_size * g.block_nr, 64 << 20);
    }

    #[test]
    fn pacing_releases_frames_at_the_rate() {
        assert_eq!(due(0, 500_000, 1_000_000), 1);
        assert_eq!(due(1_000_000_000, 500_000, 1_000_000), 500_001);
        assert_eq!(due(2_000_000, 500_000, 1_000_000), 1001);
        assert_eq!(due(10_000_000_000, 500_000, 1_000_000), 1_000_000);
        assert_eq!(due(0, 0, 42), 42);
    }

    #[test]
    fn only_ethernet_frames_that_fit_are_loaded() {
        let mut f = Vec::new();
        f.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        for len in [60usize, 10, 1600, 14] {
            for v in [1u32, 0, len as u32, len as u32] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend(std::iter::repeat_n(0xAB, len));
        }
        let p = std::env::temp_dir().join(format!("gwtel-send-{}.pcap", std::process::id()));
        std::fs::write(&p, &f).unwrap();
        let got = load(p.to_str().unwrap(), 1514).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            got.spans.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![60, 14]
        );
        assert_eq!(got.skipped, 2);
        assert_eq!(got.bytes.len(), 74);
    }
}
