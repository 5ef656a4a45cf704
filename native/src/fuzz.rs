//! Bounded fuzzing on stable Rust, run by `cargo test`: valid inputs built field by field (pcap and pcapng
//! files, Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP frames and GRE, VXLAN and GTP-U tunnels), then mutated (byte
//! flips, insertions, truncation) so the parsers past the first header are reached; none may panic, and the
//! capture reader must read the same frames however the file is cut into chunks.
//!
//! The number of cases per property is `GWTEL_FUZZ_CASES` (default 512; it sets the other property tests of
//! the crate too, proptests.rs and export/tests.rs), so CI bounds the time and a
//! longer local run is one variable away.

use proptest::prelude::*;

use crate::decode::decode;
use crate::proptests::{core, dcfg, read_all};

/// Cases per property: `GWTEL_FUZZ_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("GWTEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ETH_SRC_DST: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 203, 0, 113, 9]);
    b.extend_from_slice(payload);
    b
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    b.extend_from_slice(&[next, 64]);
    b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b.extend_from_slice(&[0x24, 0x04, 0x68, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b.extend_from_slice(payload);
    b
}

/// A TCP SYN with MSS, SACK-permitted, timestamps and window scale options.
fn tcp_syn() -> Vec<u8> {
    let mut b = vec![
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    b.extend_from_slice(&[
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
    ]);
    b
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

fn eth(ethertype: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut b = ETH_SRC_DST.to_vec();
    if let Some(v) = vlan {
        b.extend_from_slice(&0x8100u16.to_be_bytes());
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&ethertype.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Valid frames of every layer the decoder knows, on linktype 1 (Ethernet).
fn seeds() -> Vec<Vec<u8>> {
    let inner = ipv4(6, &tcp_syn());
    let dns = udp(
        5353,
        53,
        &[
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1,
        ],
    );
    let icmp = [8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4];
    let mut gre = vec![0, 0, 0x08, 0x00];
    gre.extend_from_slice(&inner);
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vxlan.extend_from_slice(&eth(0x0800, None, &inner));
    let mut gtp = vec![0x30, 0xff];
    gtp.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 1]);
    gtp.extend_from_slice(&inner);
    vec![
        eth(0x0800, None, &inner),
        eth(0x0800, Some(100), &ipv4(17, &dns)),
        eth(0x86dd, None, &ipv6(6, &tcp_syn())),
        eth(0x86dd, Some(7), &ipv6(17, &udp(40000, 443, b"quic"))),
        eth(0x0800, None, &ipv4(1, &icmp)),
        eth(0x0800, None, &ipv4(47, &gre)),
        eth(0x0800, None, &ipv4(17, &udp(50000, 4789, &vxlan))),
        eth(0x0800, None, &ipv4(17, &udp(2152, 2152, &gtp))),
    ]
}

fn mutate(mut b: Vec<u8>, flips: &[(u16, u8)], inserts: &[(u16, u8)], cut: u16) -> Vec<u8> {
    for &(pos, v) in flips {
        if !b.is_empty() {
            let i = pos as usize % b.len();
            b[i] ^= v;
        }
    }
    for &(pos, v) in inserts {
        let i = pos as usize % (b.len() + 1);
        b.insert(i, v);
    }
    // One case in four is cut short, anywhere.
    if cut % 4 == 0 {
        b.truncate((cut as usize / 4) % (b.len() + 1));
    }
    b
}

fn pcapng_option(code: u16, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&code.to_le_bytes());
    b.extend_from_slice(&(value.len() as u16).to_le_bytes());
    b.extend_from_slice(value);
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

fn pcapng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len().div_ceil(4) * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(len as usize - 4, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A pcapng file: section header, an Ethernet interface with nanosecond resolution and a snap length, an
/// enhanced packet block per seed frame, and one simple packet block.
fn pcapng_file(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    shb.extend_from_slice(&pcapng_option(0, &[]));
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    idb.extend_from_slice(&pcapng_option(9, &[9]));
    idb.extend_from_slice(&pcapng_option(0, &[]));
    let mut out = pcapng_block(0x0A0D_0D0A, &shb);
    out.extend(pcapng_block(1, &idb));
    for (i, f) in frames.iter().enumerate() {
        let ts = 1_700_000_000_000_000_000u64 + i as u64 * 1_000_000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(f);
        epb.resize(epb.len().div_ceil(4) * 4, 0);
        epb.extend_from_slice(&pcapng_option(0, &[]));
        out.extend(pcapng_block(6, &epb));
    }
    let mut spb = (frames[0].len() as u32).to_le_bytes().to_vec();
    spb.extend_from_slice(&frames[0]);
    out.extend(pcapng_block(3, &spb));
    out
}

fn edits() -> impl Strategy<Value = (Vec<(u16, u8)>, Vec<(u16, u8)>, u16)> {
    (
        proptest::collection::vec((any::<u16>(), 1u8..=255), 0..6),
        proptest::collection::vec((any::<u16>(), any::<u8>()), 0..3),
        any::<u16>(),
    )
}

#[test]
fn seeds_are_valid() {
    // The unmutated seeds decode, and the pcapng file reads back every frame: mutations start from valid input.
    for s in seeds() {
        assert!(
            decode(1, 1, &s, &dcfg()).is_ok(),
            "seed does not decode: {s:02x?}"
        );
    }
    let (frames, err) = read_all(&pcapng_file(&seeds()), None);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frames.len(), seeds().len() + 1);
    assert_eq!(frames[0].2, seeds()[0]);
    assert_eq!(frames[1].0 - frames[0].0, 1_000_000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn mutated_frames_never_panic_decoder_or_meter(
        picks in proptest::collection::vec((0usize..8, edits(), 0i64..3_000_000_000), 1..24),
    ) {
        let seeds = seeds();
        let mut c = core();
        for (which, (flips, inserts, cut), ts) in picks {
            let frame = mutate(seeds[which].clone(), &flips, &inserts, cut);
            let _ = decode(ts, 1, &frame, &dcfg());
            c.feed(ts, 1, &frame, frame.len() as u64 + 4);
        }
        c.advance(10_000_000_000);
        c.flush();
        prop_assert_eq!(c.active(), 0);
    }

    #[test]
    fn mutated_pcapng_files_never_panic_and_chunking_changes_nothing(
        (flips, inserts, cut) in edits(), split in any::<u16>(),
    ) {
        let file = mutate(pcapng_file(&seeds()), &flips, &inserts, cut);
        let split = split as usize % (file.len() + 1);
        prop_assert_eq!(read_all(&file, None).0, read_all(&file, Some(split)).0);
    }
}
