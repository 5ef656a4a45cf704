//! Incremental parser for classic pcap (µs/ns, either byte order) and pcapng, with the checks and error texts of
//! `ingest/sources/pcapfile.py`. The caller holds the bytes (a growing buffer or a
//! whole mapped file) and calls `next` until it needs more; each record comes back as its frame's place in them.

const MAX_CAPLEN: u64 = 256 * 1024;
const MAX_BLOCK_LEN: u64 = 16 * 1024 * 1024;
const NS: i128 = 1_000_000_000;

pub struct CapError {
    pub reason: String,
    pub record_no: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Clone, Copy)]
struct Iface {
    lt: u32,
    snaplen: u64,
    mul: u128,
    div: u128,
    shift: u32,
    zero: bool, // the divisor exceeds any tick count: every time is the offset alone
    off_ns: i128,
}

enum Format {
    Unknown,
    Pcap {
        be: bool,
        nano: bool,
        snaplen: u64,
        lt: u32,
    },
    Pcapng,
}

pub struct Reader {
    pos: usize,
    base: u64, // stream offset of buf[0]
    fmt: Format,
    record_no: u64,
    be: bool,
    ifaces: Vec<Iface>,
    last_ts: i64,
    pub compressed: bool,
    pub frames: u64,
    pub skipped_bad_timestamp: u64,
    pub skipped_blocks: u64,
    pub over_snaplen: u64, // records longer than their snap length, read whole
    pub error: Option<CapError>,
    pub done: bool,
    pub limit: u64,
}

pub enum Step {
    Frame {
        ts: i64,
        lt: u32,
        start: usize,
        len: usize,
        wire: u64,
    },
    Skip,
    NeedMore,
    End,
}

fn rd32(b: &[u8], be: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}
fn rd16(b: &[u8], be: bool) -> u16 {
    if be {
        u16::from_be_bytes([b[0], b[1]])
    } else {
        u16::from_le_bytes([b[0], b[1]])
    }
}

impl Reader {
    pub fn new(compressed: bool) -> Self {
        Reader {
            pos: 0,
            base: 0,
            fmt: Format::Unknown,
            record_no: 0,
            be: false,
            ifaces: Vec::new(),
            last_ts: 0,
            compressed,
            frames: 0,
            skipped_bad_timestamp: 0,
            skipped_blocks: 0,
            over_snaplen: 0,
            error: None,
            done: false,
            limit: u64::MAX,
        }
    }

    /// Forget the bytes parsed so far: the caller drops that many from the front of its buffer.
    pub fn consumed(&mut self) -> usize {
        let p = self.pos;
        self.base += p as u64;
        self.pos = 0;
        p
    }

    fn fail(&mut self, reason: String, record_no: Option<u64>, offset: Option<u64>) -> Step {
        let mut reason = reason;
        if self.compressed && offset.is_some() {
            reason.push_str(" (offset in the uncompressed stream)");
        }
        self.error = Some(CapError {
            reason,
            record_no,
            offset,
        });
        self.done = true;
        Step::End
    }

    /// Hand every complete frame of `buf` to `f` (time, link type, bytes, wire length) until more bytes are needed
    /// or the stream ended.
    pub fn each_frame<F: FnMut(i64, u32, &[u8], u64)>(&mut self, buf: &[u8], eof: bool, mut f: F) {
        loop {
            match self.next(buf, eof) {
                Step::Frame {
                    ts,
                    lt,
                    start,
                    len,
                    wire,
                } => f(ts, lt, &buf[start..start + len], wire),
                Step::Skip => {}
                Step::NeedMore | Step::End => break,
            }
        }
    }

    /// Parse the next record. `eof`: no more bytes will come.
    pub fn next(&mut self, buf: &[u8], eof: bool) -> Step {
        if self.done {
            return Step::End;
        }
        if self.frames >= self.limit {
            self.done = true;
            return Step::End;
        }
        if let Format::Unknown = self.fmt {
            return self.header(buf, eof);
        }
        match self.fmt {
            Format::Pcap {
                be,
                nano,
                snaplen,
                lt,
            } => self.pcap_record(buf, eof, be, nano, snaplen, lt),
            _ => self.pcapng_block(buf, eof),
        }
    }

    fn header(&mut self, buf: &[u8], eof: bool) -> Step {
        // Header damage is reported by the Python reader before the engine sees the file; this mirrors it.
        let avail = buf.len() - self.pos;
        if avail < 24 && !eof {
            return Step::NeedMore;
        }
        if avail < 4 {
            return self.fail(
                format!("file too short for a capture header ({avail} bytes)"),
                None,
                None,
            );
        }
        let h = &buf[self.pos..];
        let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if le == 0x0A0D0D0A || be == 0x0A0D0D0A {
            self.fmt = Format::Pcapng;
            return Step::Skip;
        }
        let nano = if le == 0xA1B2C3D4 || be == 0xA1B2C3D4 {
            false
        } else if le == 0xA1B23C4D || be == 0xA1B23C4D {
            true
        } else {
            return self.fail(
                format!("not a pcap or pcapng file (magic number 0x{be:08x})"),
                None,
                None,
            );
        };
        let bigend = !(le == 0xA1B2C3D4 || le == 0xA1B23C4D);
        if avail < 24 {
            return self.fail(
                format!("pcap file header cut short ({avail} of 24 bytes)"),
                None,
                None,
            );
        }
        let major = rd16(&h[4..], bigend);
        let minor = rd16(&h[6..], bigend);
        if major != 2 {
            return self.fail(
                format!("unsupported pcap version {major}.{minor} (only 2.x is readable)"),
                None,
                None,
            );
        }
        let snaplen = rd32(&h[16..], bigend) as u64;
        let lt = rd32(&h[20..], bigend) & 0x03FF_FFFF;
        self.fmt = Format::Pcap {
            be: bigend,
            nano,
            snaplen,
            lt,
        };
        self.pos += 24;
        Step::Skip
    }

    fn pcap_record(
        &mut self,
        buf: &[u8],
        eof: bool,
        be: bool,
        nano: bool,
        snaplen: u64,
        lt: u32,
    ) -> Step {
        let avail = buf.len() - self.pos;
        let start = self.base + self.pos as u64;
        if avail < 16 {
            if !eof {
                return Step::NeedMore;
            }
            if avail == 0 {
                self.done = true;
                return Step::End;
            }
            self.record_no += 1;
            return self.fail(
                format!("record header cut short ({avail} of 16 bytes)"),
                Some(self.record_no),
                Some(start),
            );
        }
        let h = &buf[self.pos..self.pos + 16];
        let sec = rd32(h, be) as i64;
        let frac = rd32(&h[4..], be) as i64;
        let caplen = rd32(&h[8..], be) as u64;
        let wire = rd32(&h[12..], be) as u64;
        // A record longer than the file's snap length is read whole and counted, as tshark reads it (libpcap
        // keeps the first snap-length bytes): the bytes are in the file. Only the absurdity bound refuses.
        if caplen > MAX_CAPLEN {
            self.record_no += 1;
            return self.fail(
                format!(
                    "captured length {caplen} exceeds the 256 KiB limit ({MAX_CAPLEN}): damaged record header"
                ),
                Some(self.record_no),
                Some(start),
            );
        }
        if snaplen != 0 && caplen > snaplen {
            self.over_snaplen += 1;
        }
        let need = 16 + caplen as usize;
        if avail < need {
            if !eof {
                return Step::NeedMore;
            }
            self.record_no += 1;
            let have = avail - 16;
            return self.fail(
                format!("record cut short: {have} of {caplen} captured bytes present"),
                Some(self.record_no),
                Some(start),
            );
        }
        self.record_no += 1;
        let dstart = self.pos + 16;
        self.pos += need;
        let (frac_limit, mul) = if nano {
            (1_000_000_000, 1)
        } else {
            (1_000_000, 1000)
        };
        if frac >= frac_limit {
            self.skipped_bad_timestamp += 1;
            return Step::Skip;
        }
        self.frames += 1;
        Step::Frame {
            ts: sec * 1_000_000_000 + frac * mul,
            lt,
            start: dstart,
            len: caplen as usize,
            wire: wire.max(caplen),
        }
    }

    /// Check a block's length and return (body start, body len) once it is all buffered.
    fn block_body(
        &mut self,
        buf: &[u8],
        eof: bool,
        blen: u64,
        consumed: u64,
        start: u64,
    ) -> Result<Option<(usize, usize)>, Step> {
        let block_no = Some(self.record_no);
        if blen < 12 || !blen.is_multiple_of(4) || blen > MAX_BLOCK_LEN {
            return Err(self.fail(
                format!("bad pcapng block length {blen}"),
                block_no,
                Some(start),
            ));
        }
        if blen < consumed + 4 {
            return Err(self.fail(
                format!("pcapng block length {blen} too small for its type"),
                block_no,
                Some(start),
            ));
        }
        let avail = (buf.len() - self.pos) as u64;
        if avail < blen {
            if !eof {
                return Ok(None);
            }
            return Err(self.fail(
                format!("block cut short: {avail} of {blen} bytes present"),
                block_no,
                Some(start),
            ));
        }
        let p = self.pos;
        let trailer = rd32(&buf[p + blen as usize - 4..], self.be) as u64;
        if trailer != blen {
            return Err(self.fail(
                format!("block length in header ({blen}) and trailer ({trailer}) differ"),
                block_no,
                Some(start),
            ));
        }
        Ok(Some((
            p + consumed as usize,
            (blen - consumed - 4) as usize,
        )))
    }

    fn pcapng_block(&mut self, buf: &[u8], eof: bool) -> Step {
        let avail = buf.len() - self.pos;
        let start = self.base + self.pos as u64;
        if avail < 12 && !eof {
            return Step::NeedMore;
        }
        if avail == 0 {
            self.done = true;
            return Step::End;
        }
        let block_no = self.record_no + 1;
        if avail < 4 {
            self.record_no = block_no;
            return self.fail(
                format!("block header cut short ({avail} of 8 bytes)"),
                Some(block_no),
                Some(start),
            );
        }
        let p = self.pos;
        if buf[p..p + 4] == [0x0A, 0x0D, 0x0D, 0x0A] {
            if avail < 12 {
                self.record_no = block_no;
                return self.fail(
                    "section header block cut short".to_string(),
                    Some(block_no),
                    Some(start),
                );
            }
            let bom = [buf[p + 8], buf[p + 9], buf[p + 10], buf[p + 11]];
            let be = match bom {
                [0x4D, 0x3C, 0x2B, 0x1A] => false,
                [0x1A, 0x2B, 0x3C, 0x4D] => true,
                _ => {
                    self.record_no = block_no;
                    let hex: String = bom.iter().map(|b| format!("{b:02x}")).collect();
                    return self.fail(
                        format!("bad byte-order magic in section header (0x{hex})"),
                        Some(block_no),
                        Some(start),
                    );
                }
            };
            let blen = rd32(&buf[p + 4..], be) as u64;
            self.be = be;
            self.record_no = block_no;
            let body = match self.block_body(buf, eof, blen, 12, start) {
                Err(s) => return s,
                Ok(None) => {
                    self.record_no -= 1;
                    return Step::NeedMore;
                }
                Ok(Some(b)) => b,
            };
            if body.1 < 4 {
                return self.fail(
                    "section header block too short".to_string(),
                    Some(block_no),
                    Some(start),
                );
            }
            let major = rd16(&buf[body.0..], be);
            let minor = rd16(&buf[body.0 + 2..], be);
            if major != 1 {
                return self.fail(
                    format!("unsupported pcapng version {major}.{minor} (only 1.x is readable)"),
                    Some(block_no),
                    Some(start),
                );
            }
            self.ifaces.clear();
            self.pos += blen as usize;
            return Step::Skip;
        }
        let be = self.be;
        let btype = rd32(&buf[p..], be);
        if avail < 8 {
            self.record_no = block_no;
            return self.fail(
                "block header cut short".to_string(),
                Some(block_no),
                Some(start),
            );
        }
        let blen = rd32(&buf[p + 4..], be) as u64;
        self.record_no = block_no;
        let (bs, bl) = match self.block_body(buf, eof, blen, 8, start) {
            Err(s) => return s,
            Ok(None) => {
                self.record_no -= 1;
                return Step::NeedMore;
            }
            Ok(Some(b)) => b,
        };
        let bno = Some(block_no);
        let st = Some(start);
        match btype {
            6 | 2 => {
                if bl < 20 {
                    let what = if btype == 6 {
                        "enhanced packet block too short"
                    } else {
                        "packet block too short"
                    };
                    return self.fail(what.to_string(), bno, st);
                }
                let b = &buf[bs..bs + bl];
                let (iface, ts_hi, ts_lo, caplen, wire) = if btype == 6 {
                    (
                        rd32(b, be),
                        rd32(&b[4..], be),
                        rd32(&b[8..], be),
                        rd32(&b[12..], be) as u64,
                        rd32(&b[16..], be) as u64,
                    )
                } else {
                    (
                        rd16(b, be) as u32,
                        rd32(&b[4..], be),
                        rd32(&b[8..], be),
                        rd32(&b[12..], be) as u64,
                        rd32(&b[16..], be) as u64,
                    )
                };
                if iface as usize >= self.ifaces.len() {
                    let n = self.ifaces.len();
                    return self.fail(
                        format!("packet on interface {iface}, but only {n} interface(s) described"),
                        bno,
                        st,
                    );
                }
                let f = self.ifaces[iface as usize];
                if caplen > MAX_CAPLEN {
                    return self.fail(
                        format!("captured length {caplen} exceeds the 256 KiB limit"),
                        bno,
                        st,
                    );
                }
                if f.snaplen != 0 && caplen > f.snaplen {
                    self.over_snaplen += 1; // read whole, as for pcap records
                }
                if 20 + caplen as usize > bl {
                    return self.fail(
                        format!("captured length {caplen} overruns its block ({blen} bytes)"),
                        bno,
                        st,
                    );
                }
                let ticks = ((ts_hi as u128) << 32) | ts_lo as u128;
                let scaled: i128 = if f.zero {
                    0
                } else {
                    (((ticks * f.mul) >> f.shift) / f.div) as i128
                };
                let ts = scaled + f.off_ns;
                self.pos += blen as usize;
                if ts < 0 {
                    self.skipped_bad_timestamp += 1;
                    return Step::Skip;
                }
                if ts > i64::MAX as i128 {
                    // Python's integers would carry it on; a record cannot store it, so refuse loudly.
                    return self.fail(
                        "timestamp beyond the year 2262: not supported by the native engine (agent.engine: python reads it)".to_string(),
                        bno,
                        st,
                    );
                }
                self.last_ts = ts as i64;
                self.frames += 1;
                Step::Frame {
                    ts: ts as i64,
                    lt: f.lt,
                    start: bs + 20,
                    len: caplen as usize,
                    wire: wire.max(caplen),
                }
            }
            3 => {
                if self.ifaces.is_empty() {
                    return self.fail(
                        "simple packet block before any interface description".to_string(),
                        bno,
                        st,
                    );
                }
                if bl < 4 {
                    return self.fail("simple packet block too short".to_string(), bno, st);
                }
                let f = self.ifaces[0];
                let wire = rd32(&buf[bs..], be) as u64;
                let mut caplen = if f.snaplen != 0 {
                    wire.min(f.snaplen)
                } else {
                    wire
                };
                caplen = caplen.min(bl as u64 - 4);
                self.pos += blen as usize;
                self.frames += 1;
                Step::Frame {
                    ts: self.last_ts,
                    lt: f.lt,
                    start: bs + 4,
                    len: caplen as usize,
                    wire: wire.max(caplen),
                }
            }
            1 => {
                let r = self.parse_idb(buf, bs, bl, be);
                match r {
                    Ok(f) => {
                        self.ifaces.push(f);
                        self.pos += blen as usize;
                        Step::Skip
                    }
                    Err(msg) => self.fail(msg, bno, st),
                }
            }
            _ => {
                self.skipped_blocks += 1;
                self.pos += blen as usize;
                Step::Skip
            }
        }
    }

    fn parse_idb(&self, buf: &[u8], bs: usize, bl: usize, be: bool) -> Result<Iface, String> {
        if bl < 8 {
            return Err("interface description block too short".to_string());
        }
        let b = &buf[bs..bs + bl];
        let lt = rd16(b, be) as u32;
        let snaplen = rd32(&b[4..], be) as u64;
        let mut tsresol: u32 = 6;
        let mut tsoffset: i64 = 0;
        let mut pos = 8usize;
        while pos + 4 <= bl {
            let code = rd16(&b[pos..], be);
            let olen = rd16(&b[pos + 2..], be) as usize;
            pos += 4;
            if code == 0 {
                break;
            }
            if pos + olen > bl {
                return Err(format!("interface option {code} overruns its block"));
            }
            if code == 9 && olen >= 1 {
                tsresol = b[pos] as u32;
            } else if code == 14 && olen >= 8 {
                let raw = [
                    b[pos],
                    b[pos + 1],
                    b[pos + 2],
                    b[pos + 3],
                    b[pos + 4],
                    b[pos + 5],
                    b[pos + 6],
                    b[pos + 7],
                ];
                tsoffset = if be {
                    i64::from_be_bytes(raw)
                } else {
                    i64::from_le_bytes(raw)
                };
            }
            pos += (olen + 3) & !3;
        }
        let mut f = Iface {
            lt,
            snaplen,
            mul: 1,
            div: 1,
            shift: 0,
            zero: false,
            off_ns: tsoffset as i128 * NS,
        };
        if tsresol & 0x80 != 0 {
            f.mul = 1_000_000_000;
            f.shift = tsresol & 0x7F;
        } else if tsresol <= 9 {
            f.mul = 10u128.pow(9 - tsresol);
        } else if tsresol - 9 >= 20 {
            f.zero = true; // 10**20 exceeds any 64-bit tick count
        } else {
            f.div = 10u128.pow(tsresol - 9);
        }
        Ok(f)
    }
}
