//! Text output shared by the commands: aligned tables, durations, byte counts, and the
//! `--json` switch (the API's answer as it came, pretty-printed).

use std::io::Write;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Prints an API answer: with `--json` the JSON exactly as the API sent it (pretty-printed),
/// otherwise `human` applied to the answer read as its model type `T`.
pub fn print_answer<T: DeserializeOwned>(
    out: &mut dyn Write,
    value: Value,
    json_output: bool,
    human: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json_output {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        let answer: T = serde_json::from_value(value).map_err(|e| {
            anyhow::anyhow!(
                "the API's answer is not the {} this ztos expects ({e}); are ztos and ztosd the same version?",
                std::any::type_name::<T>()
            )
        })?;
        write!(out, "{}", human(&answer))?;
    }
    Ok(())
}

/// A string cell: `-` when empty (as the API's empty strings were always shown).
pub fn text(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// An optional cell: `-` when absent (or empty).
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| text(&v.to_string()))
}

/// A list cell: the items joined with `,`, `-` when empty.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(|i| text(&i.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A role as the API writes it.
pub fn role_name(role: ztos_model::config::Role) -> &'static str {
    use ztos_model::config::Role;
    match role {
        Role::Read => "read",
        Role::Operate => "operate",
        Role::Admin => "admin",
    }
}

/// Prints any JSON pretty, as `--json` does.
pub fn print_json(out: &mut dyn Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

pub fn url_escape(s: &str) -> String {
    let mut escaped = String::new();
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(byte as char)
            }
            _ => escaped.push_str(&format!("%{byte:02X}")),
        }
    }
    escaped
}

/// An aligned table with a header row.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.push('\n');
    };
    push_row(header.to_vec());
    for row in &rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    text
}

/// Seconds since a Unix time as `1h 2m 3s ago`.
pub fn ago(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut left = now.saturating_sub(unix);
    let mut parts = Vec::new();
    for (unit, seconds) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if left >= seconds {
            parts.push(format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    if left > 0 || parts.is_empty() {
        parts.push(format!("{left}s"));
    }
    format!("{} ago", parts.join(" "))
}

/// Bytes as `wg show` prints them: `1.50 MiB`.
pub fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `3725` as `1h02m05s`, `59` as `59s`; `-` when absent (the session is down).
pub fn format_uptime(seconds: Option<u64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}
