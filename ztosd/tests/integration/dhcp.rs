//! The DHCP client against a real server: dnsmasq in one network namespace serves a veth
//! pair; the client runs in another. Lease obtained (address, router, DNS, the server's T1),
//! renewed at T1 by a unicast REQUEST once the address is installed, and lost when the
//! server is gone and the lease runs out (dnsmasq's shortest lease is 2 minutes, so this test
//! takes about 2.5 minutes). Needs root and dnsmasq (Debian dnsmasq-base, from .ci/deps).

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use ztosd::dhcp::{run, LeaseEvent};

struct Namespaces {
    server: String,
    client: String,
    dnsmasq: Option<Child>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            server: format!("ztdhcp-s{id}"),
            client: format!("ztdhcp-c{id}"),
            dnsmasq: None,
        };
        ip(&["netns", "add", &ns.server]);
        ip(&["netns", "add", &ns.client]);
        ip(&[
            "link", "add", "dhc0", "netns", &ns.client, "type", "veth", "peer", "name", "dhs0",
            "netns", &ns.server,
        ]);
        ip(&[
            "-n",
            &ns.server,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "dhs0",
        ]);
        ip(&["-n", &ns.server, "link", "set", "dhs0", "up"]);
        ip(&["-n", &ns.client, "link", "set", "dhc0", "up"]);
        ns
    }

    fn start_dnsmasq(&mut self, dir: &std::path::Path) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "dnsmasq", "--no-daemon"])
            .args([
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=dhs0",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53",
                "--dhcp-option=option:T1,6",
                "--dhcp-option=option:T2,10",
                "--log-dhcp",
            ])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("dnsmasq (Debian dnsmasq-base) must be installed; .ci/deps installs it");
        self.dnsmasq = Some(child);
    }

    fn stop_dnsmasq(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.stop_dnsmasq();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

async fn next_event(
    events: &mut mpsc::Receiver<LeaseEvent>,
    within: Duration,
    dir: &std::path::Path,
) -> LeaseEvent {
    tokio::time::timeout(within, events.recv())
        .await
        .unwrap_or_else(|_| {
            let log = std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default();
            panic!("no DHCP event within {within:?}; dnsmasq's log:\n{log}")
        })
        .expect("the runner is running")
}

#[test]
fn dhcp_lease_renew_and_expiry_against_dnsmasq() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1"),
            "this test needs root for network namespaces; set ZTOS_SKIP_ROOT_TESTS=1 to skip"
        );
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ztosd=debug")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut ns = Namespaces::new();
    ns.start_dnsmasq(dir.path());
    let client_ns = ns.client.clone();

    // The client runs on a thread that has entered the client namespace.
    let (events_tx, mut events) = mpsc::channel(16);
    let (stop_tx, stop) = watch::channel(false);
    let thread_ns = client_ns.clone();
    let runner = std::thread::spawn(move || {
        let netns = File::open(format!("/run/netns/{thread_ns}")).unwrap();
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run("dhc0".to_string(), events_tx, stop));
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // 1. A lease, with what dnsmasq was told to hand out.
        let LeaseEvent::Bound { interface, lease } =
            next_event(&mut events, Duration::from_secs(30), dir.path()).await
        else {
            panic!("first event is not a lease")
        };
        assert_eq!(interface, "dhc0");
        let offer = &lease.offer;
        let octets = offer.address.octets();
        assert_eq!(&octets[..3], &[10, 77, 0], "{offer:?}");
        assert!((50..=60).contains(&octets[3]), "{offer:?}");
        assert_eq!(offer.prefix_len, 24);
        assert_eq!(offer.server, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(offer.router, Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(offer.dns, vec![Ipv4Addr::new(10, 77, 0, 53)]);
        assert_eq!(offer.lease_time, Duration::from_secs(120));
        assert_eq!(offer.renewal, Some(Duration::from_secs(6)));
        let leases = std::fs::read_to_string(dir.path().join("leases")).unwrap();
        assert!(leases.contains(&offer.address.to_string()), "{leases}");

        // What the daemon does with a lease: the address on the interface, so the renewal
        // can be sent to the server directly.
        ip(&[
            "-n",
            &client_ns,
            "addr",
            "add",
            &format!("{}/{}", offer.address, offer.prefix_len),
            "dev",
            "dhc0",
        ]);

        // 2. Renewed at T1 (6 s), the same address.
        let LeaseEvent::Bound { lease: renewed, .. } =
            next_event(&mut events, Duration::from_secs(20), dir.path()).await
        else {
            panic!("the renewal did not come back as a lease")
        };
        assert_eq!(renewed.offer.address, offer.address);
        assert!(renewed.acquired >= lease.acquired + Duration::from_secs(6));
        let log = std::fs::read_to_string(dir.path().join("dnsmasq.log")).unwrap();
        assert!(
            log.lines().filter(|l| l.contains("DHCPACK(dhs0)")).count() >= 2,
            "{log}"
        );

        // 3. The server goes away: renewing and rebinding get no answer, and at the end of
        // the 2-minute lease it is lost.
        ns.stop_dnsmasq();
        let event = next_event(&mut events, Duration::from_secs(150), dir.path()).await;
        let LeaseEvent::Lost { lease: lost, .. } = event else {
            panic!("expected the lease to be lost, got {event:?}")
        };
        assert_eq!(lost.offer.address, offer.address);
        assert_eq!(lost.expires_at, renewed.acquired + Duration::from_secs(120));
    });

    stop_tx.send(true).unwrap();
    runner.join().unwrap();
}
