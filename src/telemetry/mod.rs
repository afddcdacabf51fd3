//! Operator-facing telemetry. [`metrics`] owns every Prometheus metric name and has one
//! function per event, so instrumenting a call site takes one line. Per-call records and
//! recordings live with the call (`call::record`, `call::recording`); logging is set up in
//! `main.rs`.

pub mod metrics;
