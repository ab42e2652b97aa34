//! The dashboard's screens as components: each owns its state and keys, and answers a key with
//! an effect the app carries out. (Screens move here from `state.rs` one at a time.)

pub mod overview;
