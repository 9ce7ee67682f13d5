//! Tests of the reconciler: `plan` against the recording kernel (no root needed), and one
//! test against the real kernel inside a network namespace it creates (root only).

use super::*;

mod kernel;

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap_or_else(|error| panic!("test config does not parse: {error}"))
}

/// The dummy loopback of `VXLAN_LEAF` (kernels without the dummy module cannot have it).
const LO0: &str = r#"[[interfaces]]
name = "lo0"
kind = "loopback"
addresses = ["10.255.0.1/32"]
"#;

const VXLAN_LEAF: &str = r#"
[[interfaces]]
name = "eth1"
addresses = ["10.0.0.1/24"]

[[interfaces]]
name = "lo0"
kind = "loopback"
addresses = ["10.255.0.1/32"]

[[bridges]]
name = "br100"
ports = ["eth2"]

[[vxlan]]
vni = 100
local_vtep = "10.0.0.1"
bridge = "br100"
underlay_interface = "eth1"
remote_vteps = ["10.0.0.2", "10.0.0.3"]

[[routes]]
destination = "10.9.0.0/16"
gateway = "10.0.0.254"
"#;

fn reconciler(kernel: &RecordingKernel) -> Reconciler {
    Reconciler::new(Box::new(kernel.clone()))
}

fn run<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

fn ops_of(kernel: &RecordingKernel) -> Vec<String> {
    kernel.executed().iter().map(ToString::to_string).collect()
}

#[test]
fn new_config_creates_everything_in_kernel_order() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let report = run(reconciler(&kernel).apply(&Config::default(), &config(VXLAN_LEAF)))
        .expect("apply succeeds");
    assert_eq!(
        report.changes,
        vec![
            "create dummy lo0",
            "create bridge br100",
            "create vxlan vx100 vni 100 local 10.0.0.1 dstport 4789 dev eth1",
            "set eth2 master br100",
            "set vx100 master br100",
            "add address 10.0.0.1/24 dev eth1",
            "add address 10.255.0.1/32 dev lo0",
            "set eth1 up",
            "set lo0 up",
            "set br100 up",
            "set vx100 up",
            "add fdb 00:00:00:00:00:00 dst 10.0.0.2 dev vx100",
            "add fdb 00:00:00:00:00:00 dst 10.0.0.3 dev vx100",
            "add route 10.9.0.0/16 via 10.0.0.254",
        ]
    );
    assert_eq!(report.changes, ops_of(&kernel));
    let state = kernel.state();
    let vx100 = state.link("vx100").expect("vx100 exists");
    assert!(vx100.managed() && vx100.up);
    assert_eq!(vx100.master.as_deref(), Some("br100"));
    match &vx100.kind {
        LinkKind::Vxlan(params) => assert!(!params.learning),
        other => panic!("vx100 is a {other:?}"),
    }
    assert!(!state.link("eth1").expect("eth1").managed());
}

#[test]
fn unchanged_recommit_touches_nothing() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("first apply");
    kernel.clear_executed();
    let report = run(reconciler.apply(&leaf, &leaf)).expect("second apply");
    assert_eq!(report.changes, Vec::<String>::new());
    assert!(kernel.executed().is_empty());
}

#[test]
fn removal_removes_only_what_ztos_put_there() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    // Objects someone else put on the host: a dummy link, an address on a configured
    // interface, a static route, and a route ztos-bgp learned.
    kernel.modify(|state| {
        state.links.push(KernelLink {
            index: 50,
            name: "foreign0".into(),
            kind: LinkKind::Dummy,
            alias: None,
            mtu: 1500,
            up: true,
            oper_state: "unknown".into(),
            mac: None,
            master: None,
        });
        state
            .addresses
            .push(("eth1".into(), "192.0.2.1/24".parse().unwrap()));
        state.routes.push(KernelRoute {
            route: Route {
                destination: "198.51.100.0/24".parse().unwrap(),
                gateway: None,
                device: Some("foreign0".into()),
                table: MAIN_TABLE,
                metric: 0,
            },
            protocol: 4,
        });
        // A route ztos-bgp learned: the plugin's own protocol, with FRR's BGP metric.
        state.routes.push(KernelRoute {
            route: Route {
                destination: "203.0.113.0/24".parse().unwrap(),
                gateway: Some("192.0.2.2".parse().unwrap()),
                device: None,
                table: MAIN_TABLE,
                metric: 20,
            },
            protocol: RTPROT_ZTOS_BGP,
        });
    });
    let before = kernel.state();
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("apply");
    kernel.clear_executed();

    let report = run(reconciler.apply(&leaf, &Config::default())).expect("removal");
    assert_eq!(
        report.changes,
        vec![
            "delete route 10.9.0.0/16 via 10.0.0.254",
            "delete address 10.0.0.1/24 dev eth1",
            "delete link vx100",
            "delete link br100",
            "delete link lo0",
        ]
    );
    let after = kernel.state();
    assert!(after.link("foreign0").is_some(), "foreign link kept");
    assert!(
        after.routes.iter().any(|r| r.protocol == 4),
        "foreign route kept"
    );
    assert!(after
        .addresses
        .contains(&("eth1".into(), "192.0.2.1/24".parse().unwrap())));
    // Everything else is back as it was, apart from the interfaces ZTOS brought up.
    assert_eq!(after.addresses, before.addresses);
    assert_eq!(after.routes, before.routes);
    assert!(after.flood.is_empty());
}

#[test]
fn stale_ztos_routes_are_removed_whatever_their_metric() {
    // Metric 20 is what BGP routes get; a ZTOS static route left from an earlier
    // configuration with that metric is still ZTOS's to remove. Ownership is the protocol.
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    kernel.modify(|state| {
        state.routes.push(KernelRoute {
            route: Route {
                destination: "203.0.113.0/24".parse().unwrap(),
                gateway: Some("192.0.2.2".parse().unwrap()),
                device: None,
                table: MAIN_TABLE,
                metric: 20,
            },
            protocol: RTPROT_ZTOS,
        });
    });
    let report = run(reconciler(&kernel).apply(&Config::default(), &config(LO0))).expect("apply");
    assert!(
        report
            .changes
            .contains(&"delete route 203.0.113.0/24 via 192.0.2.2 metric 20".to_string()),
        "{:?}",
        report.changes
    );
    assert!(kernel.state().routes.is_empty());
}

#[test]
fn missing_physical_interface_is_an_error_naming_it() {
    let kernel = RecordingKernel::with_interfaces(&["eth1"]);
    let error = run(reconciler(&kernel).apply(&Config::default(), &config(VXLAN_LEAF)))
        .expect_err("eth2 is missing");
    assert_eq!(error.to_string(), "interface eth2 does not exist");
    assert!(kernel.executed().is_empty(), "nothing was touched");
}

#[test]
fn foreign_link_with_a_configured_name_is_not_adopted() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    kernel.modify(|state| {
        state.links.push(KernelLink {
            index: 60,
            name: "br100".into(),
            kind: LinkKind::Bridge,
            alias: None,
            mtu: 1500,
            up: true,
            oper_state: "up".into(),
            mac: None,
            master: None,
        })
    });
    let error = run(reconciler(&kernel).apply(&Config::default(), &config(VXLAN_LEAF)))
        .expect_err("br100 is taken");
    assert_eq!(
        error.to_string(),
        "link br100 already exists as a bridge link that ztos does not manage"
    );
}

#[test]
fn vrf_without_kernel_support_fails_clearly_and_reverts() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    kernel.refuse_kind("vrf");
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("apply");
    let before = kernel.state();

    let with_tenant = config(&format!(
        "{VXLAN_LEAF}\n[[tenants]]\nname = \"blue\"\nvrf_table = 10\n\
         [[tenants.networks]]\nvni = 100\ngateway = \"192.168.100.254/24\"\n"
    ));
    let error = run(reconciler.apply(&leaf, &with_tenant)).expect_err("no vrf module");
    assert_eq!(
        error.to_string(),
        "creating vrf-blue: the kernel has no VRF support (module vrf not available)"
    );
    assert_eq!(kernel.state(), before);
}

#[test]
fn failure_midway_brings_the_kernel_back_to_the_previous_revision() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("apply");
    let before = kernel.state();

    let changed = config(&VXLAN_LEAF.replace("vni = 100", "vni = 200").replace(
        "[[routes]]",
        "[[bridges]]\nname = \"br200\"\naddresses = [\"172.16.0.1/24\"]\n\n[[routes]]",
    ));
    kernel.fail_on(Op::AddFlood(FloodEntry {
        link: "vx200".into(),
        remote: "10.0.0.3".parse().unwrap(),
    }));
    let error = run(reconciler.apply(&leaf, &changed)).expect_err("injected failure");
    assert!(
        error
            .to_string()
            .starts_with("add fdb 00:00:00:00:00:00 dst 10.0.0.3 dev vx200: "),
        "{error}"
    );
    let after = kernel.state();
    assert!(after.link("br200").is_none(), "br200 was removed again");
    let vx100 = after.link("vx100").expect("vx100 is back");
    assert_eq!(vx100.kind, before.link("vx100").unwrap().kind);
    let sorted = |state: &KernelState| {
        let mut flood = state.flood.clone();
        flood.sort();
        let mut addresses = state.addresses.clone();
        addresses.sort();
        (flood, addresses, state.routes.clone())
    };
    assert_eq!(sorted(&after), sorted(&before));
}

#[test]
fn changing_the_vni_recreates_the_device_and_restores_its_ports_and_flood_list() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("apply");
    let changed = config(&VXLAN_LEAF.replace("vni = 100", "vni = 101\nname = \"vx100\""));
    let report = run(reconciler.apply(&leaf, &changed)).expect("change");
    assert_eq!(
        report.changes,
        vec![
            "delete link vx100",
            "create vxlan vx100 vni 101 local 10.0.0.1 dstport 4789 dev eth1",
            "set vx100 master br100",
            "set vx100 up",
            "add fdb 00:00:00:00:00:00 dst 10.0.0.2 dev vx100",
            "add fdb 00:00:00:00:00:00 dst 10.0.0.3 dev vx100",
        ]
    );
}

#[test]
fn tenant_bridge_joins_its_vrf_before_ports_join_the_bridge() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let with_tenant = config(&format!(
        "{VXLAN_LEAF}\n[[tenants]]\nname = \"blue\"\nvrf_table = 10\n\
         [[tenants.networks]]\nvni = 100\ngateway = \"192.168.100.254/24\"\n\n\
         [[routes]]\ndestination = \"0.0.0.0/0\"\ninterface = \"br100\"\ntenant = \"blue\"\n"
    ));
    let report = run(reconciler(&kernel).apply(&Config::default(), &with_tenant)).expect("apply");
    let position = |line: &str| {
        report
            .changes
            .iter()
            .position(|change| change == line)
            .unwrap_or_else(|| panic!("{line} missing from {:#?}", report.changes))
    };
    assert_eq!(position("create vrf vrf-blue table 10"), 0);
    assert!(position("set br100 master vrf-blue") < position("set eth2 master br100"));
    assert!(position("add address 192.168.100.254/24 dev br100") < position("set br100 up"));
    assert!(position("add route 0.0.0.0/0 dev br100 table 10") > position("set br100 up"));
}

#[test]
fn previous_addresses_on_existing_interfaces_are_removed_others_kept() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    kernel.modify(|state| {
        state
            .addresses
            .push(("eth1".into(), "192.0.2.1/24".parse().unwrap()))
    });
    let leaf = config(VXLAN_LEAF);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &leaf)).expect("apply");
    let moved = config(&VXLAN_LEAF.replace("10.0.0.1/24", "10.0.0.11/24"));
    let report = run(reconciler.apply(&leaf, &moved)).expect("move");
    assert_eq!(
        report.changes,
        vec![
            "delete address 10.0.0.1/24 dev eth1",
            "add address 10.0.0.11/24 dev eth1",
        ]
    );
    assert!(kernel
        .state()
        .addresses
        .contains(&("eth1".into(), "192.0.2.1/24".parse().unwrap())));
}

#[test]
fn interfaces_reports_kernel_links_with_addresses() {
    let kernel = RecordingKernel::with_interfaces(&["eth1", "eth2"]);
    let mut reconciler = reconciler(&kernel);
    run(reconciler.apply(&Config::default(), &config(VXLAN_LEAF))).expect("apply");
    let interfaces = run(reconciler.interfaces()).expect("interfaces");
    let eth1 = interfaces.iter().find(|i| i.name == "eth1").expect("eth1");
    assert_eq!(eth1.addresses, vec!["10.0.0.1/24"]);
    assert!(eth1.admin_up && !eth1.managed);
    let vx100 = interfaces
        .iter()
        .find(|i| i.name == "vx100")
        .expect("vx100");
    assert_eq!(vx100.kind, "vxlan");
    assert_eq!(vx100.master.as_deref(), Some("br100"));
    assert!(vx100.managed);
    let json = serde_json::to_value(vx100).expect("serializes");
    assert_eq!(json["oper_state"], "up");
}

const DHCP_ETH0: &str = r#"
[[interfaces]]
name = "eth0"
dhcp = true
"#;

fn lease(last: u8, router: Option<[u8; 4]>) -> DhcpAddressing {
    DhcpAddressing {
        address: std::net::Ipv4Addr::new(10, 0, 2, last),
        prefix_len: 24,
        router: router.map(std::net::Ipv4Addr::from),
    }
}

#[test]
fn dhcp_leases_are_installed_replaced_and_removed_through_the_plan() {
    let kernel = RecordingKernel::with_interfaces(&["eth0"]);
    let mut reconciler = reconciler(&kernel);
    let config = config(DHCP_ETH0);
    run(reconciler.apply(&Config::default(), &config)).unwrap();
    kernel.clear_executed();

    run(reconciler.set_lease(&config, "eth0", Some(lease(15, Some([10, 0, 2, 2]))))).unwrap();
    let state = kernel.state();
    assert!(state
        .addresses
        .contains(&("eth0".to_string(), "10.0.2.15/24".parse().unwrap())));
    assert!(
        state
            .routes
            .iter()
            .any(|r| r.route.destination.to_string() == "0.0.0.0/0"
                && r.route.gateway == Some("10.0.2.2".parse().unwrap())),
        "{:?}",
        state.routes
    );

    // A commit of the same configuration keeps the lease (it is part of every desired state).
    kernel.clear_executed();
    run(reconciler.apply(&config, &config)).unwrap();
    assert_eq!(ops_of(&kernel), Vec::<String>::new());

    // A new address replaces the old one.
    run(reconciler.set_lease(&config, "eth0", Some(lease(16, Some([10, 0, 2, 2]))))).unwrap();
    let state = kernel.state();
    assert!(state
        .addresses
        .contains(&("eth0".to_string(), "10.0.2.16/24".parse().unwrap())));
    assert!(!state
        .addresses
        .contains(&("eth0".to_string(), "10.0.2.15/24".parse().unwrap())));

    // Lost: address and default route go.
    run(reconciler.set_lease(&config, "eth0", None)).unwrap();
    let state = kernel.state();
    assert!(!state.addresses.iter().any(|(link, _)| link == "eth0"));
    assert!(!state
        .routes
        .iter()
        .any(|r| r.route.destination.to_string() == "0.0.0.0/0"));
}

#[test]
fn dhcp_a_static_default_route_wins_and_an_unlisted_interface_is_set_up() {
    let text =
        format!("{DHCP_ETH0}\n[[routes]]\ndestination = \"0.0.0.0/0\"\ngateway = \"10.0.2.254\"\n");
    let config = config(&text);
    let mut leases = std::collections::BTreeMap::new();
    leases.insert("eth0".to_string(), lease(15, Some([10, 0, 2, 2])));
    leases.insert("eth9".to_string(), lease(99, Some([10, 0, 2, 2])));
    let desired = desired_with_leases(&config, &leases).unwrap();
    let defaults: Vec<_> = desired
        .routes
        .iter()
        .filter(|r| r.destination.to_string() == "0.0.0.0/0")
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0].gateway, Some("10.0.2.254".parse().unwrap()));
    assert!(desired
        .addresses
        .contains(&("eth0".to_string(), "10.0.2.15/24".parse().unwrap())));
    // eth9 is not in the configuration (management_dhcp = "auto" picked it): it is set up
    // and gets its address.
    assert!(desired
        .addresses
        .contains(&("eth9".to_string(), "10.0.2.99/24".parse().unwrap())));
    assert_eq!(desired.link("eth9").unwrap().up, Some(true));
    assert_eq!(desired.link("eth9").unwrap().create, None);
}

#[test]
fn dhcp_an_active_interface_is_set_up_before_its_lease() {
    let kernel = RecordingKernel::with_interfaces(&["eth0"]);
    kernel.modify(|state| state.links.iter_mut().for_each(|link| link.up = false));
    let mut reconciler = reconciler(&kernel);
    let config = Config::default();
    run(reconciler.apply(&config, &config)).unwrap();
    run(reconciler.set_dhcp_link(&config, "eth0", true)).unwrap();
    assert!(kernel.state().link("eth0").unwrap().up);
    // A commit keeps it up while the client runs.
    kernel.clear_executed();
    run(reconciler.apply(&config, &config)).unwrap();
    assert_eq!(ops_of(&kernel), Vec::<String>::new());
}
