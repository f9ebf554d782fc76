//! One module per subcommand: each owns its arguments and turns them into the options of
//! a library call.

pub mod codes;
pub mod evaluate;
pub mod generate;
pub mod import;
pub mod info;
pub mod progress;
pub mod scan;
pub mod studio;
pub mod train;
