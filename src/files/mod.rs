//! Local files a person named: checked before any node is contacted,
//! written atomically, locked.

pub mod atomic;
pub mod lock;
pub mod placed;
pub mod preflight;
