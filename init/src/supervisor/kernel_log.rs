//! The kernel log: records read from `/dev/kmsg` into the ring named `kernel`, so that
//! `ztos monitoring logs --service kernel` shows what the kernel said (PID-1 mode).

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::log_ring::LogRings;

/// The ring's name.
pub const KERNEL_SERVICE: &str = "kernel";

/// One `/dev/kmsg` record: `<priority>,<sequence>,<microseconds>,<flags>[,...];<message>`
/// followed by continuation lines (` KEY=value`), which are dropped. Returns the syslog level
/// (0 emergency .. 7 debug) and the message.
pub fn parse_record(record: &str) -> Option<(u8, &str)> {
    let (header, rest) = record.split_once(';')?;
    let priority: u32 = header.split(',').next()?.parse().ok()?;
    let message = rest.split('\n').next().unwrap_or_default();
    Some(((priority & 7) as u8, message))
}

fn level_name(level: u8) -> &'static str {
    match level {
        0 => "emerg",
        1 => "alert",
        2 => "crit",
        3 => "err",
        4 => "warning",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

/// Reads `path` (normally `/dev/kmsg`) on a thread of its own until it fails; each record
/// becomes a line in the `kernel` ring, prefixed with its level.
pub fn spawn_reader(path: &Path, rings: Arc<Mutex<LogRings>>) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    rings
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .ensure(KERNEL_SERVICE);
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("kmsg".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 8192];
            loop {
                match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buffer[..n]);
                        if let Some((level, message)) = parse_record(&text) {
                            rings.lock().unwrap_or_else(|p| p.into_inner()).push(
                                KERNEL_SERVICE,
                                KERNEL_SERVICE,
                                &format!("<{}> {message}", level_name(level)),
                            );
                        }
                    }
                    // EPIPE: records were overwritten before we read them; go on with the next.
                    Err(err) if err.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        tracing::warn!(
                            "reading {}: {err}; kernel log capture stops",
                            path.display()
                        );
                        break;
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_parse_with_level_and_without_continuations() {
        assert_eq!(
            parse_record("6,339,5140900,-;NET: Registered PF_INET6 protocol family\n"),
            Some((6, "NET: Registered PF_INET6 protocol family"))
        );
        assert_eq!(
            parse_record("11,2,100,-,caller=T1;usb 1-1: device descriptor read/64, error -71\n SUBSYSTEM=usb\n"),
            Some((3, "usb 1-1: device descriptor read/64, error -71"))
        );
        assert_eq!(parse_record("garbage without separator"), None);
        assert_eq!(parse_record("x,1,2,-;message"), None);
    }
}
