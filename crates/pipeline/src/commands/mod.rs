//! One module per subcommand.

pub mod codes;
pub mod import;
pub mod info;
pub mod scan;
