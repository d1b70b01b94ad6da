//! Tests of formats, validity and sessions.
mod formats;
mod hostile;
mod pipeline;
mod serialize;
mod sessions;
mod support;
mod validity;
