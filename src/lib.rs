//! distctl: drive a cluster of Linux machines over SSH.
//!
//! Data flows one way: inventory → plan → transport → results → merge/report.
//! The binary (`main.rs`) only parses the command line and maps errors to exit codes.

pub mod agent;
pub mod atomic;
pub mod attempt;
pub mod chunk;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod gather;
pub mod html_report;
pub mod inventory;
pub mod journal;
pub mod lines;
pub mod merge;
pub mod metrics;
pub mod nodeset;
pub mod preflight;
pub mod progress;
pub mod schedule;
pub mod shell;
pub mod shutdown;
pub mod syncstamp;
pub mod table;
pub mod tarstream;
pub mod transport;
pub mod tree;
pub mod units;
pub mod workdir;
