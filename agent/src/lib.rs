//! flink-agent: the node agent of a managed Apache Flink service.
//!
//! Each concern is one module with its own reconcile loop (desired state from the config →
//! observe → act); planning is pure and unit-tested, side effects stay at the edges.

pub mod api;
pub mod checkpoints;
pub mod config;
pub mod daemon;
pub mod firewall;
pub mod flinkconf;
pub mod flinkrest;
pub mod fsutil;
pub mod jobs;
pub mod logging;
pub mod sdnotify;
pub mod status;
pub mod supervisor;
pub mod tls;
