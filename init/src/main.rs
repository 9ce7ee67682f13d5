//! `ztos-init`: PID 1 of the appliance, or `ztos-init supervise --manifest FILE` anywhere.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("ztos-init: being written (issue 3)")
}
