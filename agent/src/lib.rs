//! flink-agent: the node agent of a managed Apache Flink service.
//!
//! One desired state is derived from the config ([`desired`]); each concern owns its module
//! and reconciles what it runs to its part of that state ([`reconcile`]); planning is pure and
//! unit-tested, side effects stay at the edges. Dependencies point one way, from the leaves up:
//!
//! - leaves: [`config`], [`fsutil`], [`procfs`], [`machine`], [`reconcile`], [`logging`],
//!   [`sdnotify`], [`events`] (typed events that log and count);
//! - concerns: [`flinkconf`], [`flinkrest`], [`firewall`], [`checkpoints`], [`supervisor`],
//!   [`jobs`];
//! - [`desired`] (derives every concern's settings), [`status`] (aggregates their reports);
//! - [`metrics`] (Prometheus exposition of the status and the event counters);
//! - [`api`] (the socket's DTOs, server and client), [`daemon`] (the composition root).
//!
//! `tests/architecture.rs` checks that no module imports one above it.

pub mod api;
pub mod checkpoints;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod events;
pub mod firewall;
pub mod flinkconf;
pub mod flinkrest;
pub mod fsutil;
pub mod jobs;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod procfs;
pub mod reconcile;
pub mod sdnotify;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod zookeeper;
