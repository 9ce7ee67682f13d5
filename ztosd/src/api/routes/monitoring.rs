//! `GET /api/v1/monitoring/logs`: the seed's monitoring API. Recent log lines of ztosd and
//! the plugins, filtered by service and age, as a JSON array or, with `follow=true`, as an
//! endless NDJSON stream (one entry per line) that starts with the matching history.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::api::auth::{Auth, ReadScope};
use crate::api::error::{ApiError, ApiQuery, ErrorBody};
use crate::api::ApiState;
use crate::logs::{LogEntry, LogQuery};

/// Entries returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 100_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Only this service (`ztosd`, `ztos-bgp`, ...).
    pub service: Option<String>,
    /// An RFC 3339 time, or an age such as `30s`, `10m`, `2h`, `1d`.
    pub since: Option<String>,
    /// At most this many entries, the newest ones (default 1000, at most 100000).
    pub limit: Option<usize>,
    /// Keep the response open and stream new entries as NDJSON.
    pub follow: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/monitoring/logs", tag = "monitoring", params(LogsParams),
    responses((status = 200, description = "Matching entries, oldest first; with follow=true an NDJSON stream (application/x-ndjson)", body = Vec<LogEntry>),
              (status = 400, description = "A bad `since` or `limit`", body = ErrorBody)))]
pub async fn logs(
    _auth: Auth<ReadScope>,
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<LogsParams>,
) -> Result<Response, ApiError> {
    let since = params
        .since
        .as_deref()
        .map(|s| parse_since(s, OffsetDateTime::now_utc()))
        .transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "invalid limit {limit}: use 1 to {MAX_LIMIT}"
        )));
    }
    let query = LogQuery {
        service: params.service,
        since,
        limit,
    };
    if !params.follow.unwrap_or(false) {
        if let Some(entries) = init_logs(&state, &query).await {
            return Ok(Json(entries).into_response());
        }
        return Ok(Json(state.daemon.logs().query(&query)).into_response());
    }

    // Subscribe before reading the history so nothing logged in between is lost; entries
    // the history already holds are skipped by time.
    let receiver = state.daemon.logs().subscribe();
    let history = state.daemon.logs().query(&query);
    let last_seen = history.last().map_or(i128::MIN, |e| e.unix_nanos);
    let history = futures::stream::iter(history.into_iter().map(ndjson_line));
    let live = futures::stream::unfold(
        (receiver, query, last_seen),
        |(mut receiver, query, last_seen)| async move {
            loop {
                match receiver.recv().await {
                    Ok(entry) if entry.unix_nanos > last_seen && query.matches(&entry) => {
                        return Some((ndjson_line(entry), (receiver, query, last_seen)));
                    }
                    Ok(_) => continue,
                    // A slow reader misses entries rather than slowing the daemon down.
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!("log follower lagged, {missed} entries skipped");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let body = Body::from_stream(history.chain(live));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// For a service ztosd has no ring for (a plugin that never connected, a console), the lines
/// ztos-init captured from its stdout and stderr; `None` when ztosd knows the service, or init
/// does not (or is not running).
async fn init_logs(state: &ApiState, query: &LogQuery) -> Option<Vec<LogEntry>> {
    let service = query.service.as_deref()?;
    if state.daemon.logs().services().iter().any(|s| s == service) {
        return None;
    }
    let captured = state
        .daemon
        .init()
        .logs(Some(service), Some(query.limit))
        .await
        .ok()?;
    let entries = captured
        .into_iter()
        .filter_map(|line| {
            let time = OffsetDateTime::parse(&line.time, &Rfc3339).ok()?;
            let entry = LogEntry {
                time: line.time,
                unix_nanos: time.unix_timestamp_nanos(),
                // Init captures raw lines; their level, if any, is in the text.
                level: crate::logs::Level::Info,
                service: line.service,
                message: line.message,
            };
            query.matches(&entry).then_some(entry)
        })
        .collect();
    Some(entries)
}

fn ndjson_line(entry: LogEntry) -> Result<Bytes, Infallible> {
    let mut line = serde_json::to_vec(&entry).unwrap_or_default();
    line.push(b'\n');
    Ok(Bytes::from(line))
}

/// Parses `since`: an RFC 3339 time, or an age (`90s`, `10m`, `2h`, `7d`) before `now`.
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let invalid = || {
        ApiError::bad_request(format!(
            "invalid since {text:?}: use an RFC 3339 time or an age such as 30s, 10m, 2h or 1d"
        ))
    };
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let seconds = number.checked_mul(seconds_per_unit).ok_or_else(invalid)?;
    now.checked_sub(time::Duration::seconds(seconds))
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_ages() {
        let now = OffsetDateTime::parse("2025-01-02T03:04:05Z", &Rfc3339).unwrap();
        let at = |s: &str| parse_since(s, now).unwrap().format(&Rfc3339).unwrap();
        assert_eq!(at("2024-12-31T00:00:00Z"), "2024-12-31T00:00:00Z");
        assert_eq!(at("10m"), "2025-01-02T02:54:05Z");
        assert_eq!(at("2h"), "2025-01-02T01:04:05Z");
        assert_eq!(at("30s"), "2025-01-02T03:03:35Z");
        assert_eq!(at("1d"), "2025-01-01T03:04:05Z");
    }

    #[test]
    fn since_rejects_nonsense_naming_it() {
        let now = OffsetDateTime::now_utc();
        for bad in [
            "",
            "10",
            "m",
            "10y",
            "-5m",
            "10 m",
            "yesterday",
            "99999999999999999999d",
        ] {
            let err = parse_since(bad, now).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
    }
}
