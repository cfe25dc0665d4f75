//! Moving directory trees: mirroring a tree into a node, what `sync` compares, the tar stream between a
//! local directory and a remote command, and the stamp `sync` leaves behind.

pub mod mirror;
pub mod stamp;
pub mod tarstream;
pub mod tree;
