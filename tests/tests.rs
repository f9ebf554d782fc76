//! End-to-end tests of the `distill` binary and the pipeline library: one test binary, so
//! the Burn stack is linked once rather than once per file.

mod cli;
mod evaluate;
mod generate;
mod library;
mod model_files;
mod studio;
mod train;
mod util;
