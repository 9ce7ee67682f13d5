//! The status socket's protocol. Its types are ztos-model's ([`ztos_model::init`]), where ztosd's
//! client finds the same ones; they are re-exported here so the supervisor's modules name them
//! as their own.

pub use ztos_model::init::{
    AssessmentState, BootStatus, LogEntry, ProtocolError, Request, Response, ServiceState,
    ServiceStatus, ShutdownKind, SlotReport,
};
