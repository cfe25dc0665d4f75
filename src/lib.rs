//! distctl: drive a cluster of Linux machines over SSH.
//!
//! Data flows one way: inventory → plan → transport → results → merge/report.
//! The binary (`main.rs`) only parses the command line and maps errors to exit codes.
//! README "How the code is laid out" has one line per folder.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod exit;
pub mod files;
pub mod metrics;
pub mod output;
pub mod run;
pub mod shutdown;
pub mod sync;
pub mod transport;
pub mod units;
