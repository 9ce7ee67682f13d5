//! The console's prompts: waiting for ztosd, the first-boot admin password, the login's
//! password without echo, and the banner shown while /perm is degraded.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context as _};
use hyper::Method;

use super::API_RETRY;
use crate::client::Client;
use ztos_model::api::users::{
    validate_password, FirstAdmin, Setup, ADMIN_USER, MIN_PASSWORD_CHARS,
};

/// The warning shown after login while ztos-init runs /perm on a tmpfs: `file` (ztos-init's
/// `/run/ztos/perm-degraded`) holds the reason. `None` when the file is absent (perm is fine).
pub(crate) fn perm_degraded_banner(file: &Path) -> Option<String> {
    let reason = std::fs::read_to_string(file).ok()?;
    let reason = reason.trim();
    let reason = if reason.is_empty() {
        "no reason recorded"
    } else {
        reason
    };
    Some(format!(
        "\n\
         WARNING: persistent storage is degraded: /perm is a tmpfs, nothing persists across a reboot.\n\
         \x20 reason: {reason}\n\
         \x20 to recover, an admin runs `system reformat-perm`: it erases the perm partition\n\
         \x20 (configuration, users, tokens, logs) and reboots with the factory configuration.\n\n"
    ))
}

/// First boot: no user exists yet. Asks for the admin password twice and creates user
/// `admin` through the API, which refuses if another console got there first.
pub(crate) async fn first_boot(client: &Client, out: &mut std::io::Stdout) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nThis box has no admin password yet. Choose one for user admin (at least {} characters).",
        MIN_PASSWORD_CHARS
    )?;
    let password = match read_new_password(ADMIN_USER) {
        Ok(password) => password,
        Err(err) => {
            writeln!(out, "{err:#}")?;
            if err.downcast_ref::<InputEnded>().is_some() {
                bail!("standard input ended before the admin password was set");
            }
            return Ok(());
        }
    };
    match client
        .json(
            Method::POST,
            "/api/v1/users/setup",
            Some(&serde_json::to_value(FirstAdmin { password })?),
        )
        .await
    {
        Ok(_) => writeln!(out, "admin password set; log in as admin")?,
        Err(err) => writeln!(out, "admin password not set: {err}")?,
    }
    Ok(())
}

/// Standard input ended while a password was being asked for.
#[derive(Debug, thiserror::Error)]
#[error("standard input ended")]
struct InputEnded;

/// Asks for a new password twice (without echo on a terminal) and checks the password rules
/// before anything is sent. Without a terminal, the two lines are read from standard input
/// (`printf '%s\n%s\n' "$pw" "$pw" | ztos user passwd NAME`).
pub fn read_new_password(user: &str) -> anyhow::Result<String> {
    let first = read_password(&format!("new password for {user}: "))?.ok_or(InputEnded)?;
    validate_password(user, &first)?;
    let second =
        read_password(&format!("repeat the new password for {user}: "))?.ok_or(InputEnded)?;
    if first != second {
        bail!("the passwords differ; nothing changed");
    }
    Ok(first)
}

/// Prints `prompt` and reads one line with echo off when standard input is a terminal.
/// `None` when standard input has ended.
pub(crate) fn read_password(prompt: &str) -> anyhow::Result<Option<String>> {
    let mut out = std::io::stdout();
    write!(out, "{prompt}")?;
    out.flush()?;
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        quiet
            .local_modes
            .insert(rustix::termios::LocalModes::ECHONL);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning off echo")?;
    }
    let line = read_line();
    if let Some(saved) = &saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
    } else {
        // No echo to suppress, so no newline was echoed either.
        writeln!(out)?;
    }
    line
}

/// One line from standard input without its line end; `None` at the end of input.
pub(crate) fn read_line() -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    if std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?
        == 0
    {
        return Ok(None);
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Waits until ztosd answers on its socket, saying so once, and returns the setup state.
pub(crate) async fn wait_for_api(
    client: &Client,
    socket: &Path,
    out: &mut std::io::Stdout,
) -> Setup {
    let mut said = false;
    loop {
        let answer = client
            .json(Method::GET, "/api/v1/users/setup", None)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|value| Ok(serde_json::from_value::<Setup>(value)?));
        match answer {
            Ok(setup) => return setup,
            Err(err) => {
                if !said {
                    let _ = writeln!(
                        out,
                        "waiting for ztosd on {} ({err}); retrying every {} s",
                        socket.display(),
                        API_RETRY.as_secs()
                    );
                    let _ = out.flush();
                    said = true;
                }
                tokio::time::sleep(API_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_perm_banner_names_the_reason_and_the_command_only_when_degraded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("perm-degraded");
        assert_eq!(perm_degraded_banner(&file), None);
        std::fs::write(&file, "e2fsck -p /dev/vda4 exited with code 8: the filesystem needs manual repair or a reformat\n").unwrap();
        let banner = perm_degraded_banner(&file).unwrap();
        assert!(
            banner.contains("WARNING: persistent storage is degraded"),
            "{banner}"
        );
        assert!(
            banner.contains("  reason: e2fsck -p /dev/vda4 exited with code 8: the filesystem needs manual repair or a reformat\n"),
            "{banner}"
        );
        assert!(banner.contains("`system reformat-perm`"), "{banner}");
        std::fs::write(&file, "").unwrap();
        assert!(perm_degraded_banner(&file)
            .unwrap()
            .contains("reason: no reason recorded"));
    }
}
