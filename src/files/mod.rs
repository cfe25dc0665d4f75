//! Local files a person named: checked before any node is contacted, and
//! written atomically.

pub mod atomic;
pub mod lock;
pub mod mapped;
pub mod preflight;
