//! `ztos-image`: builds, inspects and checks ZTOS images.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("ztos-image: the builder is being written (issue 3); nothing to run yet")
}
