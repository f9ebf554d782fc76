//! Progress bars that disappear for scripts (`--json`) and non-terminals.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar with ETA on stderr, hidden when `quiet` or when stderr is not a terminal.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}
