//! ztos-init: PID 1 of the ZTOS appliance and its service supervisor. The supervisor also runs
//! as an ordinary process (`ztos-init supervise --manifest FILE`) on any Linux.

pub mod assessment;
pub mod boot;
pub mod supervisor;
