//! NetFlow v5: a 24-byte header and up to 30 fixed 48-byte IPv4 records.

use super::{be, be16, be32, Addr, ExpRec, K_NETFLOW5, R_BAD_COUNT, R_TRUNCATED};

const HDR: usize = 24;
const REC: usize = 48;
const MAX_COUNT: usize = 30;

/// Time of a sysUptime-relative stamp (ms), given the header's uptime and export time.
pub fn uptime_ns(export_ns: i64, uptime_ms: u32, at_ms: u32) -> i64 {
    export_ns - uptime_ms.wrapping_sub(at_ms) as i64 * 1_000_000
}

pub fn decode(exporter: Addr, d: &[u8], out: &mut Vec<ExpRec>) -> Result<(), u8> {
    if d.len() < HDR {
        return Err(R_TRUNCATED);
    }
    let count = be16(d, 2).ok_or(R_TRUNCATED)? as usize;
    // the whole datagram is refused when its count disagrees with its size: records past the end are garbage
    if count == 0 || count > MAX_COUNT || HDR + count * REC > d.len() {
        return Err(R_BAD_COUNT);
    }
    let uptime = be32(d, 4).ok_or(R_TRUNCATED)?;
    let secs = be32(d, 8).ok_or(R_TRUNCATED)? as i64;
    let nsecs = be32(d, 12).ok_or(R_TRUNCATED)? as i64;
    let export_ns = secs * 1_000_000_000 + nsecs.min(999_999_999);
    let engine_id = d[21] as u32 | (d[20] as u32) << 8;
    let interval = (be16(d, 22).ok_or(R_TRUNCATED)? & 0x3fff) as u32;
    let sampling = interval.max(1);
    for i in 0..count {
        let r = &d[HDR + i * REC..HDR + (i + 1) * REC];
        let g = |o: usize, n: usize| be(r, o, n).unwrap_or(0);
        let first_ns = uptime_ns(export_ns, uptime, g(24, 4) as u32);
        // a last switched before the first (a garbled record or an uptime wrap) is read as a one-instant flow
        let last_ns = uptime_ns(export_ns, uptime, g(28, 4) as u32).max(first_ns);
        out.push(ExpRec {
            kind: K_NETFLOW5,
            exporter,
            domain: engine_id,
            src: Addr::v4(&r[0..4]),
            dst: Addr::v4(&r[4..8]),
            next_hop: Addr::v4(&r[8..12]),
            in_if: g(12, 2) as u32,
            out_if: g(14, 2) as u32,
            pkts: g(16, 4),
            bytes: g(20, 4),
            first_ns,
            last_ns,
            sport: g(32, 2) as u16,
            dport: g(34, 2) as u16,
            tcp_flags: r[37],
            proto: r[38],
            tos: r[39],
            src_as: g(40, 2) as u32,
            dst_as: g(42, 2) as u32,
            sampling,
            flow_dir: 255,
            ..Default::default()
        });
    }
    Ok(())
}
