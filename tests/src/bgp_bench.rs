//! `just bench-bgp`: route throughput and memory of a BGP daemon passing routes from one eBGP
//! peer to another, measured the same way for ztos-bgp, BIRD 2, FRR's bgpd and GoBGP.
//!
//! ```text
//!   netns a (peer A, AS 65001)          netns d (daemon under test, AS 65000)     netns b (peer B, AS 65002)
//!   10.90.1.2 eth0 ---- veth ---- eth-a 10.90.1.1   10.90.2.1 eth-b ---- veth ---- eth0 10.90.2.2
//! ```
//!
//! Peers A and B are this process, written with ZTOS's own codec (`ztos_bgp_codec`); each
//! runs on threads that entered its namespace. Both connect to the daemon (configured passive
//! for them), B first. A sends N IPv4 prefixes packed many per UPDATE, with a few attribute
//! sets shared by the prefixes (prefix i uses set i mod K, as in a table dump where many
//! prefixes share a path), then End-of-RIB. The UPDATEs are encoded before the clock starts.
//! B decodes every message it receives and counts the distinct prefixes of the announced
//! range; the time is from A's first UPDATE write to the moment B has all N. B also checks
//! the routes really came through the daemon (AS path starting 65000 65001) and notes the
//! next hops it saw.
//!
//! Peak memory is the daemon process's VmHWM after B has all routes; the RSS before A sent
//! anything is the baseline, so (peak - baseline) / N is the memory each route costs. For
//! ztos-bgp that is the plugin process; ztosd's peak is reported next to it. No daemon installs
//! routes in the kernel: BIRD has no kernel protocol, bgpd runs with `-Z -n`, gobgpd without
//! zebra, ztos-bgp with `--no-kernel`.
//!
//! Every run gets a fresh lab (namespaces, daemon), which is torn down afterwards, also when
//! the run fails; [`abort_cleanup`] removes what a run left when the process is interrupted.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use serde_json::Value;
use ztos_bgp_codec::{
    decode_message, message_length, negotiate, pack_announcements, AsPath, Asn, Capability,
    Community, Context, Family, Ipv4Prefix, Message, Negotiated, NlriEntry, NlriList, Open, Origin,
    PathAttributes, Received, Update,
};

use crate::lab::{binary, Lab, Node, NAMESPACE_PREFIX};

const DUT_AS: u32 = 65000;
const A_AS: u32 = 65001;
const B_AS: u32 = 65002;
const DUT_A: Ipv4Addr = Ipv4Addr::new(10, 90, 1, 1);
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 90, 1, 2);
const DUT_B: Ipv4Addr = Ipv4Addr::new(10, 90, 2, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 90, 2, 2);
/// Announced prefixes start here: 20.0.0.0 upwards, far from the lab's 10.90.0.0/16.
const BASE: u32 = 20 << 24;
/// The hold time A and B propose; they send a KEEPALIVE every `KEEPALIVE_EVERY` whatever is
/// negotiated.
const HOLD_TIME: u16 = 240;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// How long the daemon gets to start listening, and each OPEN exchange.
const SESSION_WAIT: Duration = Duration::from_secs(30);
/// A writes the table in chunks of whole messages of about this size, so that its keepalive
/// thread can slip a KEEPALIVE in between.
const WRITE_CHUNK: usize = 256 * 1024;

/// A daemon under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dut {
    #[serde(rename = "ztos-bgp")]
    Ztos,
    #[serde(rename = "bird")]
    Bird,
    #[serde(rename = "frr")]
    Frr,
    #[serde(rename = "gobgp")]
    Gobgp,
}

impl Dut {
    pub const ALL: [Dut; 4] = [Dut::Ztos, Dut::Bird, Dut::Frr, Dut::Gobgp];

    pub fn name(self) -> &'static str {
        match self {
            Dut::Ztos => "ztos-bgp",
            Dut::Bird => "bird",
            Dut::Frr => "frr",
            Dut::Gobgp => "gobgp",
        }
    }
}

impl std::str::FromStr for Dut {
    type Err = String;
    fn from_str(s: &str) -> Result<Dut, String> {
        Dut::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("{s:?} is not a daemon; use ztos-bgp, bird, frr or gobgp"))
    }
}

/// One table size: N prefixes of length `len`, measured `runs` times per daemon.
/// Written `N/LEN` or `N/LENxRUNS` (`100000/24x3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size {
    pub prefixes: u32,
    pub len: u8,
    pub runs: usize,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let usage = || format!("{s:?} is not a size such as 100000/24 or 100000/24x3");
        let (n, rest) = s.split_once('/').ok_or_else(usage)?;
        let (len, runs) = match rest.split_once('x') {
            Some((len, runs)) => (len, runs.parse::<usize>().map_err(|_| usage())?),
            None => (rest, 1),
        };
        let prefixes = n.parse::<u32>().map_err(|_| usage())?;
        let len = len.parse::<u8>().map_err(|_| usage())?;
        if !(8..=32).contains(&len) {
            return Err(format!("{s:?}: the prefix length must be 8..=32"));
        }
        if prefixes == 0 || runs == 0 {
            return Err(format!("{s:?}: prefixes and runs must be at least 1"));
        }
        // The range from BASE must stay below 224.0.0.0 (multicast).
        let span = u64::from(prefixes) << (32 - len);
        if u64::from(BASE) + span > 224u64 << 24 {
            return Err(format!(
                "{s:?}: {prefixes} /{len} prefixes do not fit between 20.0.0.0 and 224.0.0.0"
            ));
        }
        Ok(Size {
            prefixes,
            len,
            runs,
        })
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub daemons: Vec<Dut>,
    pub sizes: Vec<Size>,
    /// K: distinct attribute sets among the announced prefixes.
    pub attribute_sets: u32,
    /// Limit for one run, from A's first UPDATE to B having every prefix.
    pub timeout: Duration,
}

/// One measured run (or why it failed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// A's first UPDATE written to B having all N prefixes.
    pub seconds: Option<f64>,
    /// A's first UPDATE written to B's first prefix.
    pub first_prefix_seconds: Option<f64>,
    /// A's last byte written (the daemon had read the whole table, less socket buffers).
    pub sent_seconds: Option<f64>,
    /// The daemon's VmHWM after B had every prefix, KiB.
    pub peak_rss_kib: Option<u64>,
    /// The daemon's VmRSS when B had every prefix (what stays resident), KiB.
    pub rss_kib: Option<u64>,
    /// The daemon's VmRSS with both sessions up before A sent anything, KiB.
    pub baseline_rss_kib: Option<u64>,
    /// ztosd's VmHWM (ztos-bgp runs only), KiB.
    pub ztosd_peak_rss_kib: Option<u64>,
    /// User + system CPU time of the daemon process up to B having every prefix.
    pub cpu_seconds: Option<f64>,
    pub updates_sent: usize,
    pub updates_received: u64,
    pub prefixes_received: u32,
    /// Announcements B saw, duplicates included.
    pub announcements_received: u64,
    pub next_hops: Vec<String>,
    pub error: Option<String>,
}

/// All runs of one daemon at one size.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub daemon: Dut,
    pub size: Size,
    pub runs: Vec<RunResult>,
}

/// What `run` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub attribute_sets: u32,
    pub results: Vec<SizeResult>,
}

/// Runs every size for every daemon: per size, run 1 of each daemon, then run 2 of each, so
/// that a slow phase of the machine does not hit one daemon only.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    if options.attribute_sets == 0 {
        bail!("--attribute-sets must be at least 1");
    }
    let clock_ticks = clock_ticks()?;
    let mut results = Vec::new();
    for size in &options.sizes {
        let tables = Tables::new(size, options.attribute_sets)?;
        let mut by_daemon: Vec<SizeResult> = options
            .daemons
            .iter()
            .map(|&daemon| SizeResult {
                daemon,
                size: *size,
                runs: Vec::new(),
            })
            .collect();
        for run_index in 0..size.runs {
            for entry in &mut by_daemon {
                eprintln!(
                    "bench-bgp: {} with {} /{} prefixes, run {} of {}",
                    entry.daemon.name(),
                    size.prefixes,
                    size.len,
                    run_index + 1,
                    size.runs
                );
                let result = run_once(entry.daemon, size, &tables, options.timeout, clock_ticks);
                match (&result.error, result.seconds) {
                    (Some(e), _) => eprintln!("bench-bgp:   failed: {e}"),
                    (None, Some(s)) => eprintln!(
                        "bench-bgp:   {s:.2} s, peak RSS {} MiB",
                        result.peak_rss_kib.unwrap_or(0) / 1024
                    ),
                    (None, None) => {}
                }
                entry.runs.push(result);
            }
        }
        results.extend(by_daemon);
    }
    Ok(Report {
        attribute_sets: options.attribute_sets,
        results,
    })
}

// ---------------------------------------------------------------------------------------------
// The table A sends

/// A's table for one size, encoded once: the UPDATEs of the K attribute sets interleaved
/// (one message of each set in turn), as one buffer with the message boundaries.
struct Tables {
    bytes: Vec<u8>,
    /// Offsets where messages end.
    ends: Vec<usize>,
}

/// Attribute set `k` of K: ORIGIN IGP, an AS path of three ASNs (A's, one of a hundred transit
/// ASNs, a four-octet origin AS), NEXT_HOP A, two communities, a MED on every third set.
fn attribute_set(k: u32) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(vec![
            Asn(A_AS),
            Asn(64700 + k % 100),
            Asn(4_200_000_000 + k),
        ])),
        next_hop: Some(A_ADDR),
        med: (k % 3 == 0).then_some(k),
        communities: vec![
            Community((A_AS << 16) | (k & 0xffff)),
            Community((A_AS << 16) | 0x1000 | (k % 7)),
        ],
        ..PathAttributes::default()
    }
}

/// The i-th announced prefix of a size.
fn prefix(size: &Size, i: u32) -> Option<Ipv4Prefix> {
    Ipv4Prefix::new(Ipv4Addr::from(BASE + (i << (32 - size.len))), size.len)
}

/// Which announced prefix `p` is, or `None` when it is not one of the range.
fn index_of(size: &Size, p: &Ipv4Prefix) -> Option<u32> {
    if p.len() != size.len {
        return None;
    }
    let offset = u32::from(p.addr()).checked_sub(BASE)?;
    let shift = 32 - u32::from(size.len);
    let index = if shift == 32 { 0 } else { offset >> shift };
    (index < size.prefixes && index << shift == offset).then_some(index)
}

impl Tables {
    fn new(size: &Size, sets: u32) -> anyhow::Result<Tables> {
        // What A negotiates with any daemon: four-octet AS, 4096-byte messages (A does not
        // offer extended messages), no add-path.
        let ctx = Context {
            four_octet_as: true,
            ..Context::default()
        };
        let mut per_set = Vec::new();
        for k in 0..sets.min(size.prefixes) {
            let entries: Vec<NlriEntry<Ipv4Prefix>> = (k..size.prefixes)
                .step_by(sets as usize)
                .map(|i| {
                    prefix(size, i)
                        .map(NlriEntry::new)
                        .ok_or_else(|| anyhow!("prefix {i} of /{} is not valid", size.len))
                })
                .collect::<anyhow::Result<_>>()?;
            let messages =
                pack_announcements(&ctx, &attribute_set(k), None, &NlriList::Ipv4(entries))
                    .map_err(|e| anyhow!("encoding attribute set {k}: {e}"))?;
            per_set.push(messages.into_iter());
        }
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        loop {
            let mut any = false;
            for set in &mut per_set {
                if let Some(message) = set.next() {
                    bytes.extend_from_slice(&message);
                    ends.push(bytes.len());
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        Ok(Tables { bytes, ends })
    }

    /// Chunks of whole messages of about `WRITE_CHUNK` bytes.
    fn chunks(&self) -> Vec<&[u8]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &end in &self.ends {
            if end - start >= WRITE_CHUNK || end == self.bytes.len() {
                chunks.push(&self.bytes[start..end]);
                start = end;
            }
        }
        chunks
    }
}

// ---------------------------------------------------------------------------------------------
// What B counts

/// B's tally of what it received.
struct Tally {
    size: Size,
    seen: Vec<u64>,
    distinct: u32,
    announcements: u64,
    updates: u64,
    next_hops: BTreeSet<Ipv4Addr>,
    /// UPDATEs whose AS path does not start 65000 65001 (did not come A -> daemon).
    bad_paths: u64,
    withdrawn: u64,
    foreign: u64,
}

impl Tally {
    fn new(size: &Size) -> Tally {
        Tally {
            size: *size,
            seen: vec![0; (size.prefixes as usize).div_ceil(64)],
            distinct: 0,
            announcements: 0,
            updates: 0,
            next_hops: BTreeSet::new(),
            bad_paths: 0,
            withdrawn: 0,
            foreign: 0,
        }
    }

    fn complete(&self) -> bool {
        self.distinct == self.size.prefixes
    }

    fn add(&mut self, update: &Update) {
        self.updates += 1;
        self.withdrawn += update.withdrawn.len() as u64;
        if let Some(unreach) = &update.mp_unreach {
            if let NlriList::Ipv4(list) = &unreach.withdrawn {
                self.withdrawn += list.len() as u64;
            }
        }
        let mp = match &update.mp_reach {
            Some(reach) => match &reach.nlri {
                NlriList::Ipv4(list) => list.as_slice(),
                _ => &[],
            },
            None => &[],
        };
        if update.nlri.is_empty() && mp.is_empty() {
            return;
        }
        let expected = [Asn(DUT_AS), Asn(A_AS)];
        let path_ok = update
            .attributes
            .as_path
            .as_ref()
            .and_then(|p| p.segments.first())
            .is_some_and(|s| s.asns.starts_with(&expected));
        if !path_ok {
            self.bad_paths += 1;
        }
        if let Some(next_hop) = update.attributes.next_hop {
            self.next_hops.insert(next_hop);
        }
        for entry in update.nlri.iter().chain(mp) {
            self.announcements += 1;
            match index_of(&self.size, &entry.nlri) {
                Some(i) => {
                    let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                    if self.seen[word] & bit == 0 {
                        self.seen[word] |= bit;
                        self.distinct += 1;
                    }
                }
                None => self.foreign += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The peers

/// Frames a byte stream into BGP messages.
struct Framer {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Framer {
    fn new(stream: TcpStream) -> Framer {
        Framer {
            stream,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
        }
    }

    /// The next whole message, or `None` when the read timeout passed without one.
    fn next(&mut self, ctx: &Context) -> anyhow::Result<Option<&[u8]>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let length = message_length(pending, ctx)
                .map_err(|e| anyhow!("bad message framing from the daemon: {e:?}"))?;
            if let Some(length) = length {
                if pending.len() >= length {
                    let at = self.start;
                    self.start += length;
                    return Ok(Some(&self.buf[at..at + length]));
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => bail!("the daemon closed the connection"),
                Ok(n) => self.end += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the daemon"),
            }
        }
    }
}

/// One established session of A or B: a framed reader, the writer shared with the keepalive
/// thread, and the negotiated contexts. Dropping it stops the keepalive thread.
struct Session {
    framer: Framer,
    writer: Arc<Mutex<TcpStream>>,
    negotiated: Negotiated,
    stop: Arc<AtomicBool>,
    keepalive: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.framer.stream.shutdown(std::net::Shutdown::Both);
        if let Some(handle) = self.keepalive.take() {
            let _ = handle.join();
        }
    }
}

fn keepalive_bytes() -> anyhow::Result<Vec<u8>> {
    Message::Keepalive
        .to_bytes(&Context::default())
        .map_err(|e| anyhow!("encoding KEEPALIVE: {e}"))
}

/// Runs `f` on a thread that entered the network namespace `namespace`: sockets it creates
/// belong to that namespace, also after the thread ends.
fn in_namespace<T: Send + 'static>(
    namespace: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let netns = format!("/run/netns/{namespace}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = std::fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {netns}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("the thread in {namespace} panicked"))?
}

impl Session {
    /// Connects from `node` to the daemon at `daemon_addr`:179 (retrying until it listens),
    /// exchanges OPENs (AS `asn`, IPv4 unicast, four-octet AS, route refresh) and KEEPALIVEs.
    fn establish(
        node: &Node,
        daemon_addr: Ipv4Addr,
        asn: u32,
        router_id: Ipv4Addr,
        dut: &mut DutProcess,
    ) -> anyhow::Result<Session> {
        let target = SocketAddr::from((daemon_addr, 179));
        let deadline = Instant::now() + SESSION_WAIT;
        let stream = loop {
            let attempt = in_namespace(node.namespace(), move || {
                TcpStream::connect_timeout(&target, Duration::from_secs(1))
            })?;
            match attempt {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => {
                    bail!("the daemon did not accept a connection on {target}: {e}")
                }
                Err(_) => {
                    dut.check_alive()?;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let writer = Arc::new(Mutex::new(stream.try_clone()?));
        let local = Open::new(
            Asn(asn),
            HOLD_TIME,
            router_id,
            vec![
                Capability::Multiprotocol {
                    family: Family::IPV4_UNICAST,
                },
                Capability::RouteRefresh,
            ],
        );
        let open_bytes = Message::Open(local.clone())
            .to_bytes(&Context::default())
            .map_err(|e| anyhow!("encoding OPEN: {e}"))?;
        write_locked(&writer, &open_bytes)?;
        let mut framer = Framer::new(stream);
        let mut negotiated = None;
        let deadline = Instant::now() + SESSION_WAIT;
        loop {
            if Instant::now() > deadline {
                bail!("no OPEN and KEEPALIVE from the daemon within {SESSION_WAIT:?}");
            }
            let ctx = negotiated.map_or(Context::default(), |n: Negotiated| n.receive);
            let Some(bytes) = framer.next(&ctx)? else {
                dut.check_alive()?;
                continue;
            };
            match decode_message(bytes, &ctx) {
                Ok(Received::Message(Message::Open(remote))) => {
                    if remote.asn() != Asn(DUT_AS) {
                        bail!("the daemon's OPEN says AS {}, not {DUT_AS}", remote.asn().0);
                    }
                    negotiated = Some(negotiate(&local, &remote));
                    write_locked(&writer, &keepalive_bytes()?)?;
                }
                Ok(Received::Message(Message::Keepalive)) if negotiated.is_some() => break,
                Ok(Received::Message(Message::Notification(n))) => {
                    bail!("the daemon sent a NOTIFICATION during the OPEN exchange: {n:?}")
                }
                Ok(other) => bail!("unexpected message during the OPEN exchange: {other:?}"),
                Err(e) => bail!("undecodable message during the OPEN exchange: {e:?}"),
            }
        }
        let negotiated = negotiated.ok_or_else(|| anyhow!("no OPEN from the daemon"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let keepalive = {
            let (writer, stop) = (writer.clone(), stop.clone());
            let bytes = keepalive_bytes()?;
            std::thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() >= KEEPALIVE_EVERY {
                        if write_locked(&writer, &bytes).is_err() {
                            return;
                        }
                        last = Instant::now();
                    }
                }
            })
        };
        Ok(Session {
            framer,
            writer,
            negotiated,
            stop,
            keepalive: Some(keepalive),
        })
    }
}

fn write_locked(writer: &Mutex<TcpStream>, bytes: &[u8]) -> anyhow::Result<()> {
    let mut stream = writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stream.write_all(bytes).context("writing to the daemon")
}

/// A drains what the daemon sends it (KEEPALIVEs, perhaps UPDATEs) so the daemon never blocks
/// on A; a NOTIFICATION or a closed connection is recorded.
fn drain(mut session: Session, stop: Arc<AtomicBool>) -> (Session, Option<String>) {
    let ctx = session.negotiated.receive;
    while !stop.load(Ordering::Relaxed) {
        match session.framer.next(&ctx) {
            Ok(Some(bytes)) => {
                if let Ok(Received::Message(Message::Notification(n))) = decode_message(bytes, &ctx)
                {
                    return (
                        session,
                        Some(format!("the daemon sent A a NOTIFICATION: {n:?}")),
                    );
                }
            }
            Ok(None) => {}
            Err(e) => return (session, Some(format!("session A: {e:#}"))),
        }
    }
    (session, None)
}

// ---------------------------------------------------------------------------------------------
// The daemons

/// A process started in a node, killed when dropped.
struct Process {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Process {
    fn spawn(
        node: &Node,
        what: &'static str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let log = node.dir().join(format!("{what}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", node.namespace()])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {args:?}"))?;
        Ok(Process { child, what, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("{} exited ({status}); its log ends:\n{tail}", self.what);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon under test as running processes: the one measured, and for ztos-bgp ztosd.
struct DutProcess {
    main: Process,
    ztosd: Option<crate::lab::ZtosdHandle>,
}

impl DutProcess {
    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.main.check_alive()
    }

    fn ztosd_pid(&self) -> Option<u32> {
        let node = self.ztosd.as_ref()?.node();
        let output = Command::new("ip")
            .args(["netns", "pids", node.namespace()])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "ztosd")
            })
    }
}

const BIRD_CONFIG: &str = r#"
router id 10.90.1.1;
log stderr { warning, error, fatal, bug };
protocol device { }
# No kernel protocol: routes stay in BIRD's tables.
protocol bgp a {
    local 10.90.1.1 as 65000;
    neighbor 10.90.1.2 as 65001;
    passive on;
    ipv4 { import all; export none; };
}
protocol bgp b {
    local 10.90.2.1 as 65000;
    neighbor 10.90.2.2 as 65002;
    passive on;
    ipv4 { import none; export all; };
}
"#;

const FRR_CONFIG: &str = r#"
hostname dut
log stdout warnings
router bgp 65000
 bgp router-id 10.90.1.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.90.1.2 remote-as 65001
 neighbor 10.90.1.2 passive
 neighbor 10.90.2.2 remote-as 65002
 neighbor 10.90.2.2 passive
 address-family ipv4 unicast
  neighbor 10.90.1.2 activate
  neighbor 10.90.2.2 activate
  neighbor 10.90.2.2 advertisement-interval 0
 exit-address-family
"#;

const GOBGP_CONFIG: &str = r#"
[global.config]
  as = 65000
  router-id = "10.90.1.1"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.90.1.2"
    peer-as = 65001
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.90.2.2"
    peer-as = 65002
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#;

const ZTOSD_CONFIG: &str = r#"
[bgp]
local_as = 65000
router_id = "10.90.1.1"

[[bgp.neighbors]]
address = "10.90.1.2"
remote_as = 65001
passive = true

[[bgp.neighbors]]
address = "10.90.2.2"
remote_as = 65002
passive = true
"#;

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn start_dut(dut: Dut, node: &Node) -> anyhow::Result<DutProcess> {
    let dir = node.dir();
    let write = |name: &str, text: &str| -> anyhow::Result<String> {
        let file = dir.join(name);
        std::fs::write(&file, text).with_context(|| format!("writing {file:?}"))?;
        Ok(path(&file))
    };
    let (main, ztosd) = match dut {
        Dut::Bird => {
            let conf = write("bird.conf", BIRD_CONFIG)?;
            let socket = path(&dir.join("bird.ctl"));
            let p = Process::spawn(
                node,
                "bird",
                &["bird", "-f", "-c", &conf, "-s", &socket],
                &[],
            )?;
            (p, None)
        }
        Dut::Frr => {
            let conf = write("bgpd.conf", FRR_CONFIG)?;
            let file = |f: &str| path(&dir.join(f));
            let p = Process::spawn(
                node,
                "bgpd",
                &[
                    "/usr/lib/frr/bgpd",
                    "-Z",
                    "-n",
                    "-S",
                    "--vty_socket",
                    &path(dir),
                    "-z",
                    &file("zserv.api"),
                    "-i",
                    &file("bgpd.pid"),
                    "-f",
                    &conf,
                    "-P",
                    "0",
                ],
                &[],
            )?;
            (p, None)
        }
        Dut::Gobgp => {
            let conf = write("gobgpd.toml", GOBGP_CONFIG)?;
            let p = Process::spawn(
                node,
                "gobgpd",
                &[
                    "gobgpd",
                    "-f",
                    &conf,
                    "--api-hosts",
                    "127.0.0.1:50051",
                    "--pprof-disable",
                    "--log-plain",
                    "--log-level",
                    "warn",
                ],
                &[],
            )?;
            (p, None)
        }
        Dut::Ztos => {
            let ztosd = node.start_ztosd(ZTOSD_CONFIG);
            let plugin = path(&binary("ztos-bgp"));
            let socket = path(&dir.join("plugin.sock"));
            // Runtime state in the node's directory, never the host's /run/ztos.
            let p = Process::spawn(
                node,
                "ztos-bgp",
                &[
                    &plugin,
                    "--socket",
                    &socket,
                    "--run-dir",
                    &path(dir),
                    "--no-kernel",
                ],
                &[("RUST_LOG", "warn")],
            )?;
            (p, Some(ztosd))
        }
    };
    Ok(DutProcess { main, ztosd })
}

// ---------------------------------------------------------------------------------------------
// /proc

/// `VmHWM` and `VmRSS` of a process, KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// User + system CPU seconds of a process (all its threads, also those that ended).
fn cpu_seconds(pid: u32, clock_ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks)
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| anyhow!("getconf CLK_TCK printed {:?}", out.stdout))
}

// ---------------------------------------------------------------------------------------------
// One run

/// The lab directory of the run in progress, for [`abort_cleanup`].
static ACTIVE_LAB: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Removes what an interrupted run left: this process's lab namespaces (and the processes in
/// them) and the lab directory. For a signal handler; the normal path tears labs down itself.
pub fn abort_cleanup() {
    let prefix = format!("{NAMESPACE_PREFIX}{}-", std::process::id());
    if let Ok(output) = Command::new("ip").args(["netns", "list"]).output() {
        for name in String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
        {
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    let dir = ACTIVE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn run_once(
    dut: Dut,
    size: &Size,
    tables: &Tables,
    timeout: Duration,
    clock_ticks: f64,
) -> RunResult {
    let lab = Lab::new("bgpbench");
    *ACTIVE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(lab.dir().to_path_buf());
    let mut result = RunResult {
        updates_sent: tables.ends.len(),
        ..RunResult::default()
    };
    if let Err(e) = measure(&lab, dut, size, tables, timeout, clock_ticks, &mut result) {
        result.error = Some(format!("{e:#}"));
    }
    drop(lab);
    *ACTIVE_LAB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    result
}

fn measure(
    lab: &Lab,
    dut: Dut,
    size: &Size,
    tables: &Tables,
    timeout: Duration,
    clock_ticks: f64,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let (a, d, b) = (lab.node("a"), lab.node("d"), lab.node("b"));
    lab.link(
        (&a, "eth0", Some("10.90.1.2/24")),
        (&d, "eth-a", Some("10.90.1.1/24")),
    );
    lab.link(
        (&d, "eth-b", Some("10.90.2.1/24")),
        (&b, "eth0", Some("10.90.2.2/24")),
    );
    let mut daemon = start_dut(dut, &d)?;
    let pid = daemon.main.pid();
    let mut session_b =
        Session::establish(&b, DUT_B, B_AS, B_ADDR, &mut daemon).context("session B")?;
    let session_a =
        Session::establish(&a, DUT_A, A_AS, A_ADDR, &mut daemon).context("session A")?;
    // Let the daemon finish bringing both sessions up (its End-of-RIB, status reports).
    std::thread::sleep(Duration::from_secs(1));
    daemon.check_alive()?;
    result.baseline_rss_kib = memory_kib(pid).map(|(_, rss)| rss);
    let cpu_before = cpu_seconds(pid, clock_ticks);

    // A: a drain thread reads what the daemon sends; this thread writes the table.
    let writer_a = session_a.writer.clone();
    let stop_drain = Arc::new(AtomicBool::new(false));
    let drain_thread = {
        let stop = stop_drain.clone();
        std::thread::spawn(move || drain(session_a, stop))
    };
    let chunks = tables.chunks();
    let end_of_rib = Message::Update(Update {
        withdrawn: Vec::new(),
        attributes: PathAttributes::default(),
        mp_reach: None,
        mp_unreach: None,
        nlri: Vec::new(),
    })
    .to_bytes(&Context::default())
    .map_err(|e| anyhow!("encoding End-of-RIB: {e}"))?;
    let started = Instant::now();
    let sender = std::thread::scope(|scope| {
        let sender = scope.spawn(|| -> anyhow::Result<Duration> {
            for chunk in &chunks {
                write_locked(&writer_a, chunk)?;
            }
            write_locked(&writer_a, &end_of_rib)?;
            Ok(started.elapsed())
        });
        let counted = count_at_b(&mut session_b, size, started, timeout, &mut daemon, result);
        let sent = sender.join();
        (counted, sent)
    });
    let (counted, sent) = sender;
    if let Ok(Ok(sent)) = &sent {
        result.sent_seconds = Some(sent.as_secs_f64());
    }
    if let Some((peak, rss)) = memory_kib(pid) {
        result.peak_rss_kib = Some(peak);
        result.rss_kib = Some(rss);
    }
    if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(pid, clock_ticks)) {
        result.cpu_seconds = Some(after - before);
    }
    if let Some(ztosd) = daemon.ztosd_pid() {
        result.ztosd_peak_rss_kib = memory_kib(ztosd).map(|(peak, _)| peak);
    }
    stop_drain.store(true, Ordering::Relaxed);
    let drained = drain_thread
        .join()
        .map_err(|_| anyhow!("A's drain thread panicked"))?;
    drop(drained.0);
    counted?;
    match sent {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.context("A sending the table")),
        Err(_) => bail!("A's sending thread panicked"),
    }
    if let Some(e) = drained.1 {
        bail!(e);
    }
    Ok(())
}

/// B reads until it has every prefix (or the time is up, or something broke), filling in the
/// counts and times of `result`.
fn count_at_b(
    session: &mut Session,
    size: &Size,
    started: Instant,
    timeout: Duration,
    daemon: &mut DutProcess,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let ctx = session.negotiated.receive;
    let mut tally = Tally::new(size);
    let outcome = loop {
        if tally.complete() {
            result.seconds = Some(started.elapsed().as_secs_f64());
            break Ok(());
        }
        if started.elapsed() > timeout {
            break Err(anyhow!(
                "B had {} of {} prefixes after {timeout:?}",
                tally.distinct,
                size.prefixes
            ));
        }
        let bytes = match session.framer.next(&ctx) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                if let Err(e) = daemon.check_alive() {
                    break Err(e);
                }
                continue;
            }
            Err(e) => break Err(e.context("session B")),
        };
        match decode_message(bytes, &ctx) {
            Ok(Received::Message(Message::Update(update)))
            | Ok(Received::UpdateWithDiscards { update, .. }) => {
                let before = tally.distinct;
                tally.add(&update);
                if before == 0 && tally.distinct > 0 {
                    result.first_prefix_seconds = Some(started.elapsed().as_secs_f64());
                }
            }
            Ok(Received::Message(Message::Notification(n))) => {
                break Err(anyhow!("the daemon sent B a NOTIFICATION: {n:?}"))
            }
            Ok(Received::Message(_)) => {}
            Ok(Received::TreatAsWithdraw(t)) => {
                break Err(anyhow!("B got a malformed UPDATE from the daemon: {t:?}"))
            }
            Err(e) => break Err(anyhow!("B could not decode a message: {e:?}")),
        }
    };
    result.updates_received = tally.updates;
    result.prefixes_received = tally.distinct;
    result.announcements_received = tally.announcements;
    result.next_hops = tally.next_hops.iter().map(|a| a.to_string()).collect();
    outcome?;
    if tally.bad_paths > 0 {
        bail!(
            "{} UPDATEs at B did not carry the AS path 65000 65001 ...",
            tally.bad_paths
        );
    }
    if tally.withdrawn > 0 || tally.foreign > 0 {
        bail!(
            "B saw {} withdrawals and {} prefixes outside the announced range",
            tally.withdrawn,
            tally.foreign
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The table for docs/benchmarks.md

/// The median of `values` (the lower middle one for an even count), `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some(sorted[(sorted.len() - 1) / 2])
}

/// Medians of one daemon at one size over its successful runs.
#[derive(Debug, Clone, Copy, Default)]
struct Medians {
    seconds: Option<f64>,
    peak_mib: Option<f64>,
    bytes_per_route: Option<f64>,
    cpu_seconds: Option<f64>,
    ztosd_peak_mib: Option<f64>,
}

fn medians(entry: &SizeResult) -> Medians {
    let ok: Vec<&RunResult> = entry.runs.iter().filter(|r| r.error.is_none()).collect();
    let collect = |f: &dyn Fn(&RunResult) -> Option<f64>| -> Option<f64> {
        median(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    let n = f64::from(entry.size.prefixes);
    Medians {
        seconds: collect(&|r| r.seconds),
        peak_mib: collect(&|r| r.peak_rss_kib.map(|k| k as f64 / 1024.0)),
        bytes_per_route: collect(&|r| {
            Some((r.peak_rss_kib? as f64 - r.baseline_rss_kib? as f64) * 1024.0 / n)
        }),
        cpu_seconds: collect(&|r| r.cpu_seconds),
        ztosd_peak_mib: collect(&|r| r.ztosd_peak_rss_kib.map(|k| k as f64 / 1024.0)),
    }
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The Markdown tables of a report: per size, one row per daemon with the median time, the
/// rate, peak memory, memory per route and the ratios to BIRD; then ZTOS's verdict against
/// the issue's target where BIRD was measured.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    let mut sizes: Vec<Size> = Vec::new();
    for r in &report.results {
        if !sizes.contains(&r.size) {
            sizes.push(r.size);
        }
    }
    for size in sizes {
        let entries: Vec<&SizeResult> = report.results.iter().filter(|r| r.size == size).collect();
        let bird = entries
            .iter()
            .find(|e| e.daemon == Dut::Bird)
            .map(|e| medians(e));
        let runs_word = if size.runs == 1 {
            "1 run, no median".to_string()
        } else {
            format!("medians of {} runs", size.runs)
        };
        let _ = writeln!(
            out,
            "\n### {} IPv4 /{} prefixes ({runs_word})\n",
            thousands(size.prefixes),
            size.len
        );
        out.push_str("| daemon | first UPDATE to all routes at B, s | routes/s | speed vs BIRD | daemon CPU, s | peak RSS, MiB | bytes per route | memory per route vs BIRD | runs, s |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for entry in &entries {
            let m = medians(entry);
            let name = match entry.daemon {
                Dut::Ztos => match m.ztosd_peak_mib {
                    Some(z) => format!("ztos-bgp (ztosd: {z:.1} MiB peak)"),
                    None => "ztos-bgp".to_string(),
                },
                Dut::Bird => "BIRD 2".to_string(),
                Dut::Frr => "FRR bgpd".to_string(),
                Dut::Gobgp => "GoBGP".to_string(),
            };
            let rate = m.seconds.map(|s| f64::from(size.prefixes) / s);
            let speed = match (bird.and_then(|b| b.seconds), m.seconds) {
                (Some(b), Some(s)) if s > 0.0 => Some(b / s),
                _ => None,
            };
            let memory = match (bird.and_then(|b| b.bytes_per_route), m.bytes_per_route) {
                (Some(b), Some(x)) if b > 0.0 => Some(x / b),
                _ => None,
            };
            let runs: Vec<String> = entry
                .runs
                .iter()
                .map(|r| match (&r.error, r.seconds) {
                    (None, Some(s)) => format!("{s:.2}"),
                    _ => "failed".to_string(),
                })
                .collect();
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_opt(m.seconds, 2),
                fmt_opt(rate, 0),
                speed.map_or("-".to_string(), |v| format!("{v:.2} x")),
                fmt_opt(m.cpu_seconds, 2),
                fmt_opt(m.peak_mib, 1),
                fmt_opt(m.bytes_per_route, 0),
                memory.map_or("-".to_string(), |v| format!("{v:.2} x")),
                runs.join(" "),
            );
        }
        for entry in &entries {
            for (i, r) in entry.runs.iter().enumerate() {
                if let Some(e) = &r.error {
                    let first_line = e.lines().next().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "\n{} run {} failed: {first_line}",
                        entry.daemon.name(),
                        i + 1
                    );
                }
            }
        }
        let ztos = entries
            .iter()
            .find(|e| e.daemon == Dut::Ztos)
            .map(|e| medians(e));
        if let (Some(z), Some(b)) = (ztos, bird) {
            if let (Some(zs), Some(bs), Some(zm), Some(bm)) =
                (z.seconds, b.seconds, z.bytes_per_route, b.bytes_per_route)
            {
                let speed = bs / zs;
                let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
                let _ = writeln!(
                    out,
                    "\nTarget (issue 5): at least as fast as BIRD: {:.2} x, {}; aim twice BIRD: {}; less memory per route than BIRD: {:.0} vs {:.0} bytes, {}.",
                    speed,
                    verdict(speed >= 1.0),
                    verdict(speed >= 2.0),
                    zm,
                    bm,
                    verdict(zm < bm),
                );
            }
        }
    }
    out
}

fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report as JSON (what `ztos-bench bgp` prints).
pub fn to_json(report: &Report) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_refused_with_the_reason() {
        let s: Size = "100000/24x3".parse().unwrap();
        assert_eq!(
            s,
            Size {
                prefixes: 100_000,
                len: 24,
                runs: 3
            }
        );
        let s: Size = "1000000/32".parse().unwrap();
        assert_eq!(s.runs, 1);
        assert!("100000".parse::<Size>().unwrap_err().contains("not a size"));
        assert!("10/40".parse::<Size>().unwrap_err().contains("8..=32"));
        assert!("0/24".parse::<Size>().unwrap_err().contains("at least 1"));
        // 2^20 /16s do not fit above 20.0.0.0.
        assert!("1048576/16"
            .parse::<Size>()
            .unwrap_err()
            .contains("do not fit"));
        assert_eq!("bird".parse::<Dut>(), Ok(Dut::Bird));
        assert!("quagga".parse::<Dut>().is_err());
    }

    #[test]
    fn prefix_index_round_trips_and_rejects_what_is_not_announced() {
        let size: Size = "1000/24".parse().unwrap();
        for i in [0, 1, 255, 256, 999] {
            let p = prefix(&size, i).unwrap();
            assert_eq!(index_of(&size, &p), Some(i));
        }
        assert_eq!(prefix(&size, 1).unwrap().addr(), Ipv4Addr::new(20, 0, 1, 0));
        let past = prefix(&size, 1000).unwrap();
        assert_eq!(index_of(&size, &past), None);
        let wrong_len = Ipv4Prefix::new(Ipv4Addr::new(20, 0, 1, 0), 25).unwrap();
        assert_eq!(index_of(&size, &wrong_len), None);
        let below = Ipv4Prefix::new(Ipv4Addr::new(19, 0, 1, 0), 24).unwrap();
        assert_eq!(index_of(&size, &below), None);
        let hosts: Size = "1000000/32".parse().unwrap();
        let p = prefix(&hosts, 999_999).unwrap();
        assert_eq!(index_of(&hosts, &p), Some(999_999));
    }

    /// A's table decoded message by message and counted as B counts: every prefix exactly
    /// once, in well under one UPDATE per prefix, and a table missing one message is not
    /// complete.
    #[test]
    fn the_table_a_sends_counts_complete_at_b() {
        let size: Size = "20000/24".parse().unwrap();
        let tables = Tables::new(&size, 10).unwrap();
        assert!(tables.ends.len() < 200, "{} UPDATEs", tables.ends.len());
        let ctx = Context {
            four_octet_as: true,
            ..Context::default()
        };
        // As B sees them once the daemon prepended its AS.
        let mut tally = Tally::new(&size);
        let mut start = 0;
        let mut paths = BTreeSet::new();
        for (n, &end) in tables.ends.iter().enumerate() {
            let Ok(Received::Message(Message::Update(mut update))) =
                decode_message(&tables.bytes[start..end], &ctx)
            else {
                panic!("message {n} did not decode as an UPDATE");
            };
            paths.insert(update.attributes.as_path.clone());
            update.attributes.as_path =
                update.attributes.as_path.map(|p| p.prepend(Asn(DUT_AS), 1));
            assert!(
                !tally.complete(),
                "complete before message {n} of the table"
            );
            tally.add(&update);
            start = end;
        }
        assert!(tally.complete());
        assert_eq!(tally.announcements, 20_000);
        assert_eq!(tally.bad_paths, 0);
        assert_eq!(paths.len(), 10, "ten attribute sets");
        // Without the daemon's AS the path is wrong.
        let Ok(Received::Message(Message::Update(update))) =
            decode_message(&tables.bytes[..tables.ends[0]], &ctx)
        else {
            panic!("first message");
        };
        let mut direct = Tally::new(&size);
        direct.add(&update);
        assert_eq!(direct.bad_paths, 1);
        // Chunks cover the table exactly, on message boundaries.
        let total: usize = tables.chunks().iter().map(|c| c.len()).sum();
        assert_eq!(total, tables.bytes.len());
    }

    #[test]
    fn the_markdown_table_has_medians_and_ratios_to_bird() {
        let size: Size = "1000/24x3".parse().unwrap();
        let run = |seconds: f64, peak: u64| RunResult {
            seconds: Some(seconds),
            peak_rss_kib: Some(peak),
            baseline_rss_kib: Some(1000),
            cpu_seconds: Some(seconds / 2.0),
            ..RunResult::default()
        };
        let report = Report {
            attribute_sets: 10,
            results: vec![
                SizeResult {
                    daemon: Dut::Ztos,
                    size,
                    runs: vec![run(1.0, 2000), run(3.0, 2000), run(2.0, 2000)],
                },
                SizeResult {
                    daemon: Dut::Bird,
                    size,
                    runs: vec![run(4.0, 3000), run(4.0, 3000), run(4.0, 3000)],
                },
                SizeResult {
                    daemon: Dut::Gobgp,
                    size,
                    runs: vec![RunResult {
                        error: Some("B had 5 of 1000 prefixes after 1s\nmore".into()),
                        ..RunResult::default()
                    }],
                },
            ],
        };
        let md = render_markdown(&report);
        assert!(
            md.contains("### 1,000 IPv4 /24 prefixes (medians of 3 runs)"),
            "{md}"
        );
        // ztos: median 2 s, 500 routes/s, twice BIRD; (2000-1000) KiB / 1000 = 1024 bytes.
        assert!(
            md.contains(
                "| ztos-bgp | 2.00 | 500 | 2.00 x | 1.00 | 2.0 | 1024 | 0.50 x | 1.00 3.00 2.00 |"
            ),
            "{md}"
        );
        assert!(md.contains("| BIRD 2 | 4.00 | 250 | 1.00 x |"), "{md}");
        assert!(md.contains("| GoBGP | - | - | - |"), "{md}");
        assert!(
            md.contains("gobgp run 1 failed: B had 5 of 1000 prefixes after 1s\n"),
            "{md}"
        );
        assert!(md.contains("at least as fast as BIRD: 2.00 x, met; aim twice BIRD: met; less memory per route than BIRD: 1024 vs 2048 bytes, met."), "{md}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
