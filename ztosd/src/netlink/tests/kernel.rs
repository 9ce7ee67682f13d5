//! The reconciler against the real kernel, inside a network namespace this test creates and
//! always deletes. Needs root; without it the test prints why it did nothing.

use std::fs::File;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use super::{config, LO0, VXLAN_LEAF};
use crate::config::Config;
use crate::netlink::{KernelState, Reconciler, RtnetlinkKernel};

/// A network namespace that is deleted when dropped, also when the test panics.
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    fn create(purpose: &str) -> TestNamespace {
        let name = format!("ztos-t-{}-{purpose}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        let namespace = TestNamespace { name };
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    /// Runs `ip -n <namespace> ...` and returns its standard output.
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    fn bridge(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("bridge", &full)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The parts of the kernel state that must survive a failed apply unchanged (operational
/// state and carrier can change on their own).
fn comparable(mut state: KernelState) -> KernelState {
    for link in &mut state.links {
        link.oper_state.clear();
    }
    // The kernel gives links IPv6 link-local addresses (and their fe80::/64 routes) by itself,
    // some time after they come up; they are neither ZTOS's doing nor in step with the test.
    let link_local = |net: &ipnet::IpNet| match net {
        ipnet::IpNet::V6(v6) => (v6.addr().segments()[0] & 0xffc0) == 0xfe80,
        ipnet::IpNet::V4(_) => false,
    };
    state.addresses.retain(|(_, address)| !link_local(address));
    state
        .routes
        .retain(|route| !link_local(&route.route.destination));
    state.addresses.sort();
    state.flood.sort();
    state.routes.sort_by(|a, b| a.route.cmp(&b.route));
    state
}

#[test]
fn reconciler_programs_a_real_kernel_in_a_namespace() {
    if !nix::unistd::Uid::effective().is_root() {
        // CI runs as root; skipping is only for a developer who asked for it.
        assert!(
            std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1"),
            "this test needs root for a network namespace; set ZTOS_SKIP_ROOT_TESTS=1 to skip"
        );
        eprintln!("skipping reconciler_programs_a_real_kernel_in_a_namespace: needs root");
        return;
    }
    let namespace = TestNamespace::create("reconcile");
    // The "physical" interfaces: veth ends whose peers stay in the namespace too.
    namespace.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "eth1-peer",
    ]);
    namespace.ip(&[
        "link",
        "add",
        "eth2",
        "type",
        "veth",
        "peer",
        "name",
        "eth2-peer",
    ]);
    namespace.ip(&["link", "set", "eth1-peer", "up"]);
    // Something that is not ZTOS's: it must survive every apply.
    namespace.ip(&[
        "link",
        "add",
        "foreign0",
        "type",
        "veth",
        "peer",
        "name",
        "foreign0-peer",
    ]);
    namespace.ip(&["link", "set", "foreign0", "up"]);
    namespace.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "foreign0",
        "proto",
        "static",
    ]);

    // Some kernels (this CI host's) lack the dummy module: the loopback dummy is left out
    // there, and its creation must fail with a clear error.
    let dummy_supported = Command::new("ip")
        .args([
            "-n",
            &namespace.name,
            "link",
            "add",
            "probe0",
            "type",
            "dummy",
        ])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(VXLAN_LEAF.contains(LO0));
    let leaf_text = if dummy_supported {
        namespace.ip(&["link", "del", "probe0"]);
        VXLAN_LEAF.to_string()
    } else {
        eprintln!("this kernel has no dummy interfaces: testing without lo0");
        VXLAN_LEAF.replace(LO0, "")
    };
    let leaf_for_removal = leaf_text.clone();

    let path = format!("/run/netns/{}", namespace.name);
    let worker = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|error| panic!("opening {path}: {error}"));
        setns(&file, CloneFlags::CLONE_NEWNET).expect("entering the test namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let kernel = RtnetlinkKernel::new().expect("rtnetlink socket");
            let mut reconciler = Reconciler::new(Box::new(kernel.clone()));
            if !dummy_supported {
                let error = reconciler
                    .apply(&Config::default(), &config(VXLAN_LEAF))
                    .await
                    .expect_err("no dummy module");
                assert_eq!(
                    error.to_string(),
                    "creating lo0: the kernel has no dummy interface support \
                     (module dummy not available)"
                );
            }
            let leaf = config(&leaf_text);
            let report = reconciler
                .apply(&Config::default(), &leaf)
                .await
                .expect("applying the leaf config");
            assert!(report
                .changes
                .iter()
                .any(|c| c.starts_with("create vxlan vx100")));
            let unchanged = reconciler.apply(&leaf, &leaf).await.expect("re-apply");
            let applied = comparable(
                crate::netlink::Kernel::read_state(&kernel)
                    .await
                    .expect("reading state"),
            );

            // Dropping the route is executed before the VRF creation fails, so the revert
            // has something to undo.
            let without_route = leaf_text.split("[[routes]]").next().expect("leaf config");
            let with_tenant = config(&format!(
                "{without_route}\n[[tenants]]\nname = \"blue\"\nvrf_table = 10\n\
                 [[tenants.networks]]\nvni = 100\ngateway = \"192.168.100.254/24\"\n"
            ));
            let vrf_error = reconciler.apply(&leaf, &with_tenant).await;
            let after_vrf = comparable(
                crate::netlink::Kernel::read_state(&kernel)
                    .await
                    .expect("reading state"),
            );
            (report, unchanged, applied, vrf_error.map(drop), after_vrf)
        })
    });
    let (report, unchanged, applied, vrf_result, after_vrf) = match worker.join() {
        Ok(results) => results,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    eprintln!("first apply:\n  {}", report.changes.join("\n  "));

    let vx100 = namespace.ip(&["-d", "link", "show", "vx100"]);
    for expected in [
        "master br100",
        "vxlan id 100",
        "local 10.0.0.1",
        "dev eth1",
        "dstport 4789",
        "nolearning",
        "alias ztos-managed",
    ] {
        assert!(
            vx100.contains(expected),
            "vx100 lacks `{expected}`:\n{vx100}"
        );
    }
    if dummy_supported {
        assert!(namespace
            .ip(&["-d", "link", "show", "lo0"])
            .contains("dummy"));
    }
    assert!(namespace
        .ip(&["link", "show", "eth2"])
        .contains("master br100"));
    assert!(namespace
        .ip(&["address", "show", "eth1"])
        .contains("inet 10.0.0.1/24"));
    let fdb = namespace.bridge(&["fdb", "show", "dev", "vx100"]);
    for remote in ["10.0.0.2", "10.0.0.3"] {
        assert!(
            fdb.contains(&format!("00:00:00:00:00:00 dst {remote} self permanent")),
            "no flood entry for {remote}:\n{fdb}"
        );
    }
    let routes = namespace.ip(&["route", "show", "proto", "196"]);
    assert!(
        routes.contains("10.9.0.0/16 via 10.0.0.254 dev eth1"),
        "{routes}"
    );

    assert_eq!(
        unchanged.changes,
        Vec::<String>::new(),
        "re-apply changed things"
    );

    let error = vrf_result.expect_err("this kernel has no vrf module");
    assert_eq!(
        error.to_string(),
        "creating vrf-blue: the kernel has no VRF support (module vrf not available)"
    );
    assert_eq!(after_vrf, applied, "the failed apply was not reverted");
    assert!(!namespace.ip(&["link", "show"]).contains("vrf-blue"));

    // Removing everything, from a fresh reconciler as after a daemon restart.
    let path = format!("/run/netns/{}", namespace.name);
    let removal = std::thread::spawn(move || {
        let file = File::open(&path).expect("namespace");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let kernel = RtnetlinkKernel::new().expect("rtnetlink socket");
                Reconciler::new(Box::new(kernel))
                    .apply(&config(&leaf_for_removal), &Config::default())
                    .await
            })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    .expect("removing everything");
    eprintln!("removal:\n  {}", removal.changes.join("\n  "));
    let links = namespace.ip(&["link", "show"]);
    for gone in ["vx100", "br100", "lo0"] {
        assert!(
            !links.contains(&format!(" {gone}:")),
            "{gone} still exists:\n{links}"
        );
    }
    assert!(
        links.contains(" foreign0@"),
        "foreign0 was removed:\n{links}"
    );
    assert!(namespace
        .ip(&["route", "show", "proto", "196"])
        .trim()
        .is_empty());
    assert!(namespace
        .ip(&["route", "show", "proto", "static"])
        .contains("198.51.100.0/24 dev foreign0"));
    assert!(!namespace
        .ip(&["address", "show", "eth1"])
        .contains("10.0.0.1/24"));
}
