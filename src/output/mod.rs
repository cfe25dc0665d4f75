//! What people and scripts see: progress bars, aligned tables, per-node line
//! prefixes and folded blocks, and the closing summary of a many-node command.

pub mod gather;
pub mod json;
pub mod lines;
pub mod man;
pub mod progress;
pub mod relay;
pub mod run_summary;
pub mod summary;
pub mod table;
