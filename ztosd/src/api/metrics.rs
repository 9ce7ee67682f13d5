//! Counters and latency histograms of the API's own HTTP requests, by method, route template
//! and status, rendered into `/metrics` next to the daemon's and the plugins' metrics.
//!
//! Routes are labelled by their template (`/api/v1/config/revisions/{n}`), never by the
//! concrete path, so that clients cannot grow the label set without bound.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ztos_plugin::prom_text::{PromText, PromType};

use super::ApiState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Latency {
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Tables {
    /// (method, route, status) -> requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route) -> latency.
    latency: BTreeMap<(String, String), Latency>,
}

/// The API's request metrics.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    tables: Mutex<Tables>,
}

impl HttpMetrics {
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        *tables
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let latency = tables
            .latency
            .entry((method.to_string(), route.to_string()))
            .or_default();
        latency.count += 1;
        latency.sum_seconds += seconds;
        for (bucket, bound) in latency.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Appends the metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = PromText::new(out);
        let mut requests = text.family(
            "ztosd_http_requests_total",
            PromType::Counter,
            "API requests by method, route and status.",
        );
        for ((method, route, status), count) in &tables.requests {
            let status = status.to_string();
            requests.sample(
                &[("method", method), ("route", route), ("status", &status)],
                *count,
            );
        }
        let mut duration = text.family(
            "ztosd_http_request_duration_seconds",
            PromType::Histogram,
            "Time to the response head, by method and route.",
        );
        for ((method, route), latency) in &tables.latency {
            for (bound, count) in BUCKETS.iter().zip(latency.buckets) {
                let bound = bound.to_string();
                duration.sample_suffixed(
                    "_bucket",
                    &[("method", method), ("route", route), ("le", &bound)],
                    count,
                );
            }
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            duration
                .sample_suffixed(
                    "_bucket",
                    &[labels[0], labels[1], ("le", "+Inf")],
                    latency.count,
                )
                .sample_suffixed("_sum", &labels, latency.sum_seconds)
                .sample_suffixed("_count", &labels, latency.count);
        }
    }
}

/// Middleware (installed with `route_layer`, so the matched route is known) that records
/// every routed request.
pub async fn track(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    state.http.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_exact_and_routes_are_escaped() {
        let metrics = HttpMetrics::default();
        metrics.record("POST", "/a\"b\\c\nd", 503, 12.0);
        let mut out = String::new();
        metrics.render(&mut out);
        let labels = "method=\"POST\",route=\"/a\\\"b\\\\c\\nd\"";
        let mut expected = format!(
            "# HELP ztosd_http_requests_total API requests by method, route and status.\n\
             # TYPE ztosd_http_requests_total counter\n\
             ztosd_http_requests_total{{{labels},status=\"503\"}} 1\n\
             # HELP ztosd_http_request_duration_seconds Time to the response head, by method and route.\n\
             # TYPE ztosd_http_request_duration_seconds histogram\n"
        );
        for bound in [
            "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10",
        ] {
            expected.push_str(&format!(
                "ztosd_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} 0\n"
            ));
        }
        expected.push_str(&format!(
            "ztosd_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 1\n\
             ztosd_http_request_duration_seconds_sum{{{labels}}} 12\n\
             ztosd_http_request_duration_seconds_count{{{labels}}} 1\n"
        ));
        assert_eq!(out, expected);
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = HttpMetrics::default();
        metrics.record("GET", "/health", 200, 0.002);
        metrics.record("GET", "/health", 200, 0.2);
        metrics.record("GET", "/health", 503, 0.002);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains(
            "ztosd_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"
        ));
        assert!(out.contains(
            "ztosd_http_requests_total{method=\"GET\",route=\"/health\",status=\"503\"} 1"
        ));
        assert!(out.contains(
            "ztosd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.001\"} 0"
        ));
        assert!(out.contains(
            "ztosd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.005\"} 2"
        ));
        assert!(out.contains(
            "ztosd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.25\"} 3"
        ));
        assert!(out.contains(
            "ztosd_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 3"
        ));
    }
}
