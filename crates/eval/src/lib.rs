//! Evaluation: statistics over plain numbers and the paper's claims as checkable statements.
//!
//! This crate never touches tensors: it takes `f64`s from the runner and returns summaries.

pub mod claims;
pub mod stats;
