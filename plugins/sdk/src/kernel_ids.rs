//! The ids ZTOS's processes put on what they install in the kernel, written once for ztosd and
//! the plugins. Ownership is decided by these ids, never by a metric or a table: each process
//! removes only what carries its own id, so ztosd's reconciler and ztos-bgp never delete each
//! other's routes. `ip route` shows them as `proto 196` and `proto 197`.

/// The routing protocol id of the routes ztosd installs (static and DHCP routes). ztosd's
/// reconciler removes only routes carrying it.
pub const RTPROT_ZTOS: u8 = 196;

/// The routing protocol id of the routes (and EVPN neighbour and FDB entries) the ztos-bgp
/// plugin installs. They are the plugin's to add and remove; ztosd never touches them.
pub const RTPROT_ZTOS_BGP: u8 = 197;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_outside_the_kernels_own() {
        assert_ne!(RTPROT_ZTOS, RTPROT_ZTOS_BGP);
        // Below 5 the kernel's own (unspec, redirect, kernel, boot, static); iproute2 names
        // 8..=192 after other daemons (gated 8 ... openr 99, eigrp 192).
        for id in [RTPROT_ZTOS, RTPROT_ZTOS_BGP] {
            assert!(id > 192, "{id} collides with an id iproute2 names");
        }
    }
}
