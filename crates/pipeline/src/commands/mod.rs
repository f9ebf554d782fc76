//! One module per subcommand.

pub mod codes;
pub mod evaluate;
pub mod generate;
pub mod import;
pub mod info;
pub mod scan;
