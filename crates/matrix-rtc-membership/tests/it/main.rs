//! Integration tests of matrix-rtc-membership.
mod membership;
mod own;
