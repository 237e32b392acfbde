//! The pure mutation, run by the webhook (and `inject -f`): pod annotations
//! ([`pod::PodView`]) -> a validated [`spec::InjectionSpec`] -> a JSON [`patch`]. No I/O.

pub mod patch;
pub mod pod;
pub mod spec;
