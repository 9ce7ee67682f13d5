//! The `ztos-bgp` plugin process (being built: see docs/bgp.md).

fn main() {
    eprintln!("ztos-bgp: the plugin process is not built yet");
    std::process::exit(1);
}
