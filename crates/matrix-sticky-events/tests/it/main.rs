//! Integration tests of matrix-sticky-events.
