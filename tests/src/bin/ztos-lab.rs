//! `ztos-lab up`: the two-leaf demo lab. Builds the VXLAN topology of tests/lab/leaf1.toml
//! and leaf2.toml in network namespaces, starts ztosd on each leaf, forwards
//! https://127.0.0.1:8443 on the host to leaf 1's API, prints how to use it, and tears it
//! all down on Ctrl-C or SIGTERM.

use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use nix::sched::{setns, CloneFlags};
use ztos_tests::lab::{can_run_labs, Lab, TwoLeafTopology, LEAF1_CONFIG, LEAF2_CONFIG};

const FORWARD_ADDRESS: &str = "127.0.0.1:8443";

#[derive(Debug, Parser)]
#[command(
    name = "ztos-lab",
    about = "The ZTOS two-leaf VXLAN demo lab (needs root)"
)]
struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the lab, start ztosd on both leaves, and wait for Ctrl-C.
    Up,
    /// Boot the appliance image in qemu (TCG) with its serial console on this terminal and
    /// HTTPS forwarded to https://127.0.0.1:8443.
    Vm {
        /// The image (qcow2); `just image` writes target/image/ztos.qcow2.
        #[arg(long)]
        image: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        LabCommand::Up => lab_up(),
        LabCommand::Vm { image } => vm(image),
    }
}

/// Runs the image interactively. The disk is a throw-away overlay: every run is a first boot.
fn vm(image: Option<PathBuf>) -> anyhow::Result<()> {
    let image = image.unwrap_or_else(ztos_tests::vm::default_image);
    if !image.is_file() {
        bail!(
            "no image at {} (build it with `just image`)",
            image.display()
        );
    }
    let image = image.canonicalize()?;
    let dir = tempfile::Builder::new().prefix("ztos-vm-").tempdir()?;
    println!(
        "Booting {} under qemu (TCG: about a minute to the console).\n\
         First boot asks for the admin password; then log in as admin. The management\n\
         interface gets its address by DHCP from qemu's user network (`interfaces` shows the\n\
         lease; `token create NAME --role admin` makes an API token),\n\
         and the API answers on https://127.0.0.1:8443. `system poweroff --yes` ends it\n\
         (Ctrl-A X kills qemu).\n",
        image.display()
    );
    let status = ztos_tests::vm::qemu_command(&image, dir.path(), FORWARD_ADDRESS)?
        .args(["-nographic", "-serial", "mon:stdio"])
        .status()
        .context("starting qemu-system-x86_64 (just deps)")?;
    if !status.success() {
        bail!("qemu exited with {status}");
    }
    Ok(())
}

fn lab_up() -> anyhow::Result<()> {
    if !can_run_labs() {
        bail!("ztos-lab needs root: it creates network namespaces");
    }

    let lab = Lab::new("demo");
    let TwoLeafTopology {
        leaf1, leaf2, h1, ..
    } = lab.two_leaf_topology();
    println!("starting ztosd on leaf1 and leaf2 ...");
    let ztosd1 = leaf1.start_ztosd(LEAF1_CONFIG);
    let _ztosd2 = leaf2.start_ztosd(LEAF2_CONFIG);

    let listener = TcpListener::bind(FORWARD_ADDRESS)
        .with_context(|| format!("listening on {FORWARD_ADDRESS} for the HTTPS forwarder"))?;
    let namespace_file = PathBuf::from("/run/netns").join(leaf1.namespace());
    thread::spawn(move || forward(listener, namespace_file));

    let ztos = ztos_tests::lab::binary("ztos");
    let socket = ztosd1.api_socket();
    let token = ztosd1.ztos(&["token", "create", "lab-admin", "--role", "admin"]);
    let token_text = String::from_utf8_lossy(&token.stdout);
    let secret = token_text
        .lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or("<TOKEN>")
        .trim()
        .to_string();
    let ca = ztosd1.state_dir().join("tls/ca.pem");
    println!(
        "\nThe ZTOS lab is up: leaf1 and leaf2 (ztosd each), hosts h1 192.168.100.1 and \
         h2 192.168.100.2 on VNI 100.\n\n\
         CLI (leaf1):   {ztos} --socket {socket} security status\n\
         {:15}{ztos} --socket {socket} config show\n\
         {:15}(leaf2: --socket {leaf2_socket})\n\
         API (leaf1):   curl --cacert {ca} -H 'Authorization: Bearer {secret}' \
         https://127.0.0.1:8443/api/v1/interfaces\n\
         Hosts:         ip netns exec {h1} ping 192.168.100.2\n\
         Logs:          {log1}\n\n\
         Ctrl-C tears the lab down.",
        "",
        "",
        ztos = ztos.display(),
        socket = socket.display(),
        leaf2_socket = _ztosd2.api_socket().display(),
        ca = ca.display(),
        h1 = h1.namespace(),
        log1 = ztosd1.log_path().display(),
    );

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?
        .block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                result = tokio::signal::ctrl_c() => result,
                _ = terminate.recv() => Ok(()),
            }
        })
        .context("waiting for Ctrl-C")?;
    println!("tearing the lab down ...");
    drop(ztosd1);
    drop(_ztosd2);
    drop(lab);
    Ok(())
}

/// Accepts connections on the host and relays each to 127.0.0.1:8443 inside leaf 1's
/// namespace: a thread enters the namespace before connecting, so the outgoing socket
/// belongs to it.
fn forward(listener: TcpListener, namespace: PathBuf) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let namespace = namespace.clone();
        thread::spawn(move || {
            if let Err(error) = relay(client, &namespace) {
                eprintln!("forwarder: {error:#}");
            }
        });
    }
}

fn relay(client: TcpStream, namespace: &PathBuf) -> anyhow::Result<()> {
    let file = File::open(namespace).with_context(|| format!("opening {}", namespace.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET).context("entering leaf1's namespace")?;
    let server = TcpStream::connect(FORWARD_ADDRESS).context("connecting to leaf1's API")?;
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let upstream = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}
