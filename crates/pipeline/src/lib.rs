//! Distill's application layer: model files, training, generation, evaluation and code
//! grids as library calls any front end can drive (the `distill` command line is one).
//!
//! Library modules take typed options and report through typed values; only `cli` and
//! `commands` know about the command line.

pub mod backend;
pub mod bench;
pub mod cancel;
pub mod cli;
pub mod codes;
pub mod commands;
pub mod evaluate;
pub mod fsutil;
pub mod generate;
pub mod interrupt;
pub mod modelfile;
pub mod models;
pub mod report;
pub mod studio;
pub mod train;
