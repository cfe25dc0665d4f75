//! Local files a person named: checked before any node is contacted,
//! written atomically, and read through mappings where their bytes are only
//! looked at.

pub mod atomic;
pub mod lock;
pub mod mapped;
pub mod preflight;
