//! The run engine behind `distctl run`: plan the chunks, schedule them over
//! the nodes, run one attempt per chunk, merge the verified results in input
//! order, and keep a journal to resume from.

pub mod attempt;
pub mod chunk;
pub mod journal;
pub mod merge;
pub mod schedule;
