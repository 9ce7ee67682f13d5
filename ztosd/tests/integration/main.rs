//! ztosd's integration tests, one test binary (`--test integration`, one link) with a module
//! per area: `dhcp` (the DHCP client against dnsmasq in network namespaces, root) and `update`
//! (the update service end to end through the real `ztosd` binary in its test mode).

mod dhcp;
mod update;
