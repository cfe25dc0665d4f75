//! The run engine behind `distctl run`: the job and how the agent is asked
//! to do it ([`job`]), the input planned or streamed ([`input`], cut by
//! [`chunk`]), the scheduler ([`schedule`], simulated by [`dryrun`]), one
//! attempt per chunk ([`attempt`], reading the agent's answer with
//! [`reply`]), the ordered merge ([`merge`]) into the
//! output ([`results`]), the resume journal ([`journal`]), and the runner
//! that drives them ([`runner`]), filling in a [`summary`].

pub mod attempt;
pub mod chunk;
pub mod dryrun;
pub mod input;
pub mod job;
pub mod journal;
pub mod merge;
pub mod reply;
pub mod results;
pub mod runner;
pub mod schedule;
pub mod summary;
pub mod wire;
