//! The `distill` command-line tool: orchestration and file I/O around the model crates.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod fsutil;
pub mod interrupt;
pub mod modelfile;
pub mod models;
pub mod progress;
pub mod report;
pub mod train;
