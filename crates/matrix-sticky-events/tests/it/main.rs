//! Integration tests of matrix-sticky-events.

mod batch;
mod fairness;
mod fixtures;
mod hostile;
mod map;
mod parse;
mod props;
mod snapshot;
mod support;
